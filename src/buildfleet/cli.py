"""Entry point placeholder; replaced as the flows land."""

from __future__ import annotations

import sys

from buildfleet.cmdline import parse_args


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
