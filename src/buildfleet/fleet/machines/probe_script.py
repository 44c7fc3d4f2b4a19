"""Runs ON a build machine (sent to its bare ``python3`` on stdin) and prints one JSON object.

Why a separate, self-contained file: the machine may have nothing but
Debian's ``python3`` (no buildfleet, no third-party packages, maybe an older
Python), so this script uses only the standard library and old syntax, and
never imports buildfleet. The boss reads it with importlib.resources and
judges the result (see probe.py). Usage: ``python3 - [WORK_DIR] < probe_script.py``.

Toolchains are the ones the machine itself finds: ``~/.buildman-toolchains``
(downloaded with --fetch-arch) and its own PATH, with buildman's rules for
names (``<prefix>-gcc``; a bare ``gcc`` is the sandbox) and priorities.
"""

import glob
import json
import os
import platform
import subprocess
import sys

# The same numbers as buildfleet.toolchains (PRIO_*, SUFFIX_PRIORITY), restated
# because this script cannot import buildfleet; tests/test_machines.py ties them.
PRIO_DOWNLOAD = 3
PRIO_SUFFIX_BASE = 4
PRIO_NO_SUFFIX = 15
PRIO_PATH_BASE = 16
SUFFIXES = ("-elf", "-unknown-linux-gnu", "-linux", "-none-linux-gnueabi",
            "-none-linux-gnueabihf", "-uclinux", "-none-eabi", "-gentoo-linux-gnu",
            "-linux-gnueabi", "-linux-gnueabihf", "-le-linux", "-uclinux")
NOT_TOOLCHAINS = ("c89-gcc", "c99-gcc")
TOOLS = (("gcc", ["gcc", "--version"]), ("make", ["make", "--version"]),
         ("git", ["git", "--version"]), ("dtc", ["dtc", "--version"]),
         ("swig", ["swig", "-version"]), ("python3", ["python3", "--version"]))


def first_line(argv):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    return lines[0].strip() if lines else None


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def bogomips():
    for line in read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("bogomips"):
            try:
                return float(line.split(":", 1)[1])
            except ValueError:
                return None
    return None


def mem_avail_mb():
    for line in read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return None


def disk_avail_mb(path):
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    try:
        st = os.statvfs(path or "/")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize // (1024 * 1024)


def is_compiler(name):
    if name in NOT_TOOLCHAINS or not (name == "gcc" or name.endswith("-gcc")):
        return False
    cross = name[:-3]
    half = len(cross) // 2
    return not (cross and len(cross) % 2 == 0 and cross[:half] == cross[half:])


def gccs_in(directory):
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    out = []
    for name in names:
        path = os.path.join(directory, name)
        if is_compiler(name) and os.path.isfile(path) and os.access(path, os.X_OK):
            out.append(path)
    return out


def split_name(name):
    cross = name[:name.rfind("-") + 1]
    if not cross:
        return "", "sandbox"
    return cross, cross.split("-", 1)[0]


def suffix_priority(path, base):
    for index, suffix in enumerate(SUFFIXES):
        if suffix in path:
            return base + index
    return base + (PRIO_NO_SUFFIX - PRIO_SUFFIX_BASE)


def nolibc_version(path):
    for part in path.split(os.sep):
        if part.startswith("gcc-") and "nolibc" in part:
            return part
    return None


def toolchains():
    candidates = []
    root = os.path.expanduser("~/.buildman-toolchains")
    for sub in sorted(glob.glob(os.path.join(root, "*", "*"))):
        for d in (sub, os.path.join(sub, "bin"), os.path.join(sub, "usr", "bin")):
            candidates += [(PRIO_DOWNLOAD, g) for g in gccs_in(d)]
    seen = set()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and d not in seen:
            seen.add(d)
            candidates += [(suffix_priority(g, PRIO_PATH_BASE), g) for g in gccs_in(d)]
    best = {}  # type: dict
    for prio, gcc in candidates:
        cross, arch = split_name(os.path.basename(gcc))
        if arch not in best or prio < best[arch]["priority"]:
            best[arch] = {"gcc": gcc, "cross": cross, "priority": prio,
                          "version": nolibc_version(gcc)}
    for arch in list(best):
        if first_line([best[arch]["gcc"], "--version"]) is None:
            del best[arch]
    return best


def main():
    work_dir = os.path.expanduser(sys.argv[1] if len(sys.argv) > 1 else "~")
    try:
        load_1m = os.getloadavg()[0]
    except OSError:
        load_1m = None
    try:
        threads = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        threads = os.cpu_count() or 1
    info = {
        "python_version": ".".join(str(n) for n in sys.version_info[:3]),
        "arch": platform.machine(),
        "cpus": os.cpu_count() or 1,
        "threads": threads,
        "bogomips": bogomips(),
        "load_1m": load_1m,
        "mem_avail_mb": mem_avail_mb(),
        "disk_avail_mb": disk_avail_mb(work_dir),
        "work_dir": work_dir,
        "tools": dict((name, first_line(argv)) for name, argv in TOOLS),
        "toolchains": toolchains(),
    }
    sys.stdout.write(json.dumps(info, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
