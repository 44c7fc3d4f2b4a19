#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0+
"""List the size of u-boot's code, with objcopy given as ONE argument.

Stands for U-Boot's scripts/build_api.py, which its Makefile runs as
``--objcopy $(OBJCOPY)``: a $(CROSS_COMPILE)tool must be a single word
(CROSS_COMPILE="ccache <prefix>" makes it two, and this fails with
"unrecognized arguments", as U-Boot's sandbox build does).
"""

import argparse
import os
import subprocess
import sys
import tempfile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objcopy", required=True, help="the objcopy program")
    parser.add_argument("--output", required=True, help="the list to write")
    parser.add_argument("--elf", required=True, help="the linked image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "text.bin")
        proc = subprocess.run([args.objcopy, "-O", "binary", "-j", ".text", args.elf, text],
                              check=False)
        if proc.returncode != 0:
            return proc.returncode
        size = os.path.getsize(text)
    with open(args.output, "w", encoding="utf-8") as out:
        out.write(f"text {size}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
