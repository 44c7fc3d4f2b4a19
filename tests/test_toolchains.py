"""Tests for toolchain discovery, selection, environments and --fetch-arch."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildfleet.boards import BoardsError
from buildfleet.model import Board
from buildfleet.selection import shared_arch
from buildfleet.settings import Settings, load_settings, parse_settings
from buildfleet.toolchain_fetch import fetch_arch
from buildfleet.toolchains import (
    Toolchain,
    ToolchainError,
    Toolchains,
    list_toolchains_text,
    print_prefix,
    scan_toolchains,
)
from ci_skip import require

DEBIAN_CROSS = {"aarch64": "aarch64-linux-gnu-", "arm": "arm-linux-gnueabihf-",
                "riscv64": "riscv64-linux-gnu-"}


def host_gcc() -> str:
    gcc = shutil.which("gcc")
    require(gcc is not None, "no host gcc on PATH")
    assert gcc is not None
    return gcc


def make_gcc(path: Path, works: bool = True) -> Path:
    """A real compiler: a script that runs the host gcc (or one that fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f'exec {host_gcc()} "$@"' if works else "echo broken >&2; exit 1"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def settings_from(tmp_path: Path, text: str) -> Settings:
    return parse_settings(text, tmp_path / "bm.ini")


# --- discovery ---------------------------------------------------------------------------

@pytest.mark.cross
def test_scan_finds_host_gcc_and_debian_cross_compilers(tmp_path: Path) -> None:
    for cross in DEBIAN_CROSS.values():
        require(shutil.which(cross + "gcc") is not None, f"{cross}gcc is not installed")
    gcc = host_gcc()
    # The default file's riscv = riscv32 alias must not hide riscv64.
    tcs = scan_toolchains(load_settings(home=tmp_path, stderr=io.StringIO()))
    sandbox = tcs.select("sandbox")
    assert sandbox.gcc == Path(gcc) and sandbox.cross == ""
    for arch, cross in DEBIAN_CROSS.items():
        tc = tcs.select(arch)
        assert (tc.arch, tc.cross, tc.gcc) == (arch, cross, Path(shutil.which(cross + "gcc") or ""))
    assert tcs.select("riscv").arch == "riscv64"
    assert {"sandbox", "aarch64", "arm", "riscv64", "riscv"} <= tcs.archs()
    # No wrappers or versioned duplicates masquerade as toolchains.
    assert not any(a in tcs.archs() for a in ("c89", "c99", "gcc"))
    assert all(tc.gcc.name.endswith("gcc") for _, tc in tcs.items())


@pytest.mark.cross
def test_cross_env_really_compiles_for_its_arch(tmp_path: Path) -> None:
    require(shutil.which("aarch64-linux-gnu-gcc") is not None, "aarch64 cross gcc missing")
    tcs = scan_toolchains(settings_from(tmp_path, ""))
    src = tmp_path / "t.c"
    src.write_text("int f(int x) { return x * 3; }\n")
    tc = tcs.select("aarch64")
    for full_path in (False, True):
        env = tc.make_env(full_path=full_path)
        subprocess.run(["sh", "-c", '${CROSS_COMPILE}gcc -c t.c -o t.o'], cwd=tmp_path,
                       env=env, check=True, timeout=60)
        assert (tmp_path / "t.o").read_bytes()[18:20] == (183).to_bytes(2, "little")  # EM_AARCH64
    size = subprocess.run([tc.tool("size"), "t.o"], cwd=tmp_path, capture_output=True,
                          text=True, check=True, timeout=30)
    assert size.stdout.splitlines()[0].split()[:3] == ["text", "data", "bss"]


def test_priorities_and_skips(tmp_path: Path) -> None:
    make_gcc(tmp_path / "a" / "bin" / "foo-linux-gcc")         # -linux: 4 + 2
    make_gcc(tmp_path / "b" / "usr" / "bin" / "foo-elf-gcc")   # -elf: 4 + 0
    make_gcc(tmp_path / "dl" / "gcc-1-nolibc" / "foo-x" / "bin" / "foo-x-gcc")  # download: 3
    make_gcc(tmp_path / "a" / "bin" / "bar-gcc")               # no suffix: 15
    make_gcc(tmp_path / "a" / "bin" / "qux-linux-qux-linux-gcc")  # doubled prefix: skipped
    make_gcc(tmp_path / "a" / "bin" / "c89-gcc")               # not a toolchain
    make_gcc(tmp_path / "a" / "bin" / "foo-linux-gcc-ar")      # not a compiler
    make_gcc(tmp_path / "a" / "bin" / "foo-linux-gcc-12")      # versioned duplicate
    make_gcc(tmp_path / "a" / "bin" / "bad-elf-gcc", works=False)
    text = (f"[toolchain]\nfirst = {tmp_path}/a\nsecond = {tmp_path}/b\n"
            f"download = {tmp_path}/dl/*/*\n")
    log: list[str] = []
    tcs = scan_toolchains(settings_from(tmp_path, text), use_path=False, verbose=True,
                          log=log.append)
    assert {arch: (tc.gcc.name, tc.priority) for arch, tc in tcs.items()} == {
        "foo": ("foo-x-gcc", 3), "bar": ("bar-gcc", 15)}
    assert "Tool chain test:  BAD" in log
    assert f"Command: {tmp_path}/a/bin/bad-elf-gcc --version" in log
    assert "broken" in log
    assert (f"Toolchain '{tmp_path}/b/usr/bin/foo-elf-gcc' at priority 4 will be ignored "
            "because another toolchain for arch 'foo' has priority 3") in log
    assert f"      - looking in '{tmp_path}/b/usr/bin'" in log
    assert not any("qux" in line or "c89" in line for line in log)

    # Without the download, the -elf toolchain beats the -linux one.
    text = f"[toolchain]\nfirst = {tmp_path}/a\nsecond = {tmp_path}/b\n"
    tcs = scan_toolchains(settings_from(tmp_path, text), use_path=False)
    assert (tcs.select("foo").gcc.name, tcs.select("foo").priority) == ("foo-elf-gcc", 4)


def test_tilde_and_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    make_gcc(tmp_path / "tc-one" / "bin" / "one-elf-gcc")
    make_gcc(tmp_path / "tc-two" / "two-elf-gcc")
    tcs = scan_toolchains(settings_from(tmp_path, "[toolchain]\nmine = ~/tc-*\n"),
                          use_path=False)
    assert sorted(tcs.archs()) == ["one", "two"]


def test_path_scan_ranks_below_configured(tmp_path: Path) -> None:
    make_gcc(tmp_path / "onpath" / "foo-elf-gcc")
    make_gcc(tmp_path / "conf" / "foo-linux-gnueabihf-gcc")  # 4 + 2 ('-linux' found first)
    make_gcc(tmp_path / "onpath" / "gcc")
    settings = settings_from(tmp_path, f"[toolchain]\nconf = {tmp_path}/conf\n")
    env = {"PATH": f"{tmp_path}/onpath:{tmp_path}/onpath"}
    tcs = scan_toolchains(settings, env=env)
    assert tcs.select("foo").gcc == tmp_path / "conf" / "foo-linux-gnueabihf-gcc"
    assert tcs.select("sandbox").gcc == tmp_path / "onpath" / "gcc"
    assert scan_toolchains(settings, env=env, use_path=False).archs() == {"foo"}


def test_prefix_entries(tmp_path: Path) -> None:
    make_gcc(tmp_path / "p" / "full-path-gcc")
    make_gcc(tmp_path / "p" / "pre-elf-gcc")
    make_gcc(tmp_path / "onpath" / "lookup-elf-gcc")
    text = (f"[toolchain-prefix]\nalpha = {tmp_path}/p/full-path-gcc\n"
            f"beta = {tmp_path}/p/pre-elf-\ngamma = lookup-elf-\n")
    tcs = scan_toolchains(settings_from(tmp_path, text), env={"PATH": f"{tmp_path}/onpath"})
    got = {arch: (tc.gcc.name, tc.cross, tc.priority) for arch, tc in tcs.items()}
    assert got == {"alpha": ("full-path-gcc", "full-path-", 0),
                   "beta": ("pre-elf-gcc", "pre-elf-", 1),
                   "gamma": ("lookup-elf-gcc", "lookup-elf-", 2),
                   "lookup": ("lookup-elf-gcc", "lookup-elf-", 16)}


def test_bad_prefix_errors(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, f"[toolchain-prefix]\narm = {tmp_path}/nope/arm-\n")
    with pytest.raises(ToolchainError) as info:
        scan_toolchains(settings, use_path=False)
    assert str(info.value) == f"No tool chain found for prefix '{tmp_path}/nope/arm-gcc'"
    errors: list[str] = []
    tcs = scan_toolchains(settings, use_path=False, errors=errors)
    assert errors == [str(info.value)] and len(tcs) == 0


# --- selection, aliases, maps ------------------------------------------------------------

def tc(arch: str, gcc: str, priority: int = 4, wrapper: str = "") -> Toolchain:
    path = Path(gcc)
    cross = path.name[: path.name.rfind("-") + 1]
    return Toolchain(gcc=path, arch=arch, cross=cross, priority=priority, wrapper=wrapper)


def test_select_aliases_first() -> None:
    tcs = Toolchains(aliases={"x86": ["i386"], "riscv": ["riscv32", "riscv64"],
                              "arm": ["armv7"], "sh": ["sh4"]})
    for one in (tc("i386", "/t/i386-linux-gcc"), tc("x86", "/t/x86-linux-gcc"),
                tc("riscv64", "/t/riscv64-linux-gcc"), tc("arm", "/t/arm-linux-gcc")):
        assert tcs.add(one)
    assert tcs.select("x86").arch == "i386"
    assert tcs.select("riscv").arch == "riscv64"
    assert tcs.select("arm").arch == "arm"  # alias has no toolchain, exact match used
    with pytest.raises(ToolchainError, match=r"^No tool chain found for arch 'sh'$"):
        tcs.select("sh")
    assert tcs.archs() == {"i386", "x86", "riscv64", "riscv", "arm"}
    assert "riscv" in tcs and "sh" not in tcs
    # A replacement needs a strictly lower priority.
    assert not tcs.add(tc("arm", "/u/arm-elf-gcc", priority=4))
    assert tcs.add(tc("arm", "/u/arm-elf-gcc", priority=3))
    assert tcs.select("arm").gcc == Path("/u/arm-elf-gcc")


def test_map_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    tcs = Toolchains.from_map({"arm": "~/t/bin/arm-linux-gcc", "sandbox": "/usr/bin/gcc"},
                              aliases={"x86": ["i386"]}, wrapper="ccache")
    assert tcs.to_map() == {"arm": f"{tmp_path}/t/bin/arm-linux-gcc", "sandbox": "/usr/bin/gcc"}
    arm = tcs.select("arm")
    assert (arm.cross, arm.wrapper) == ("arm-linux-", "ccache")
    assert Toolchains.from_map(tcs.to_map()).to_map() == tcs.to_map()
    with pytest.raises(ToolchainError, match="bad toolchain entry"):
        Toolchains.from_map({"arm": ""})


# --- environment and files -----------------------------------------------------------------

def test_make_env() -> None:
    arm = tc("arm", "/opt/tc/bin/arm-linux-gcc")
    base = {"PATH": "/usr/bin:/bin", "HOME": "/h", "CROSS_COMPILE": "stale-"}
    env = arm.make_env(base)
    assert env == {"PATH": "/opt/tc/bin:/usr/bin:/bin", "HOME": "/h",
                   "CROSS_COMPILE": "arm-linux-", "LC_ALL": "C"}
    assert base["CROSS_COMPILE"] == "stale-"  # the caller's mapping is untouched
    env = arm.make_env(base, full_path=True)
    assert (env["CROSS_COMPILE"], env["PATH"]) == ("/opt/tc/bin/arm-linux-", "/usr/bin:/bin")
    env = arm.make_env(base, override_cc="clang")
    assert "CROSS_COMPILE" not in env and env["PATH"] == "/usr/bin:/bin"
    assert env["LC_ALL"] == "C"
    wrapped = tc("arm", "/opt/tc/bin/arm-linux-gcc", wrapper="ccache")
    assert wrapped.make_env(base)["CROSS_COMPILE"] == "ccache arm-linux-"
    assert wrapped.make_env(base, True)["CROSS_COMPILE"] == "ccache /opt/tc/bin/arm-linux-"
    sandbox = tc("sandbox", "/usr/bin/gcc")
    assert sandbox.make_env(base)["CROSS_COMPILE"] == ""
    venv = {"PATH": "/v/bin:/usr/bin", "VIRTUAL_ENV": "/v"}
    assert arm.make_env(venv)["PATH"] == "/v/bin:/opt/tc/bin:/usr/bin"


def test_tool_and_toolchain_file() -> None:
    arm = tc("arm", "/opt/tc/bin/arm-linux-gcc")
    assert arm.tool("objdump") == "/opt/tc/bin/arm-linux-objdump"
    assert tc("sandbox", "/usr/bin/gcc").tool("size") == "size"
    assert arm.toolchain_file(0) == ("gcc /opt/tc/bin/arm-linux-gcc\npath /opt/tc/bin\n"
                                     "cross arm-linux-\narch arm\n0")
    assert tc("sandbox", "/usr/bin/gcc").toolchain_file(2) == (
        "gcc /usr/bin/gcc\npath /usr/bin\ncross \narch sandbox\n2")


def test_list_text() -> None:
    tcs = Toolchains()
    assert list_toolchains_text(tcs) == "List of available toolchains (0):\nNone\n\n"
    tcs.add(tc("sandbox", "/usr/bin/gcc"))
    tcs.add(tc("aarch64", "/usr/bin/aarch64-linux-gnu-gcc"))
    assert list_toolchains_text(tcs) == (
        "List of available toolchains (2):\n"
        "aarch64   : /usr/bin/aarch64-linux-gnu-gcc\n"
        "sandbox   : /usr/bin/gcc\n\n")


def test_print_arch_needs_no_toolchain() -> None:
    """Issue 13, point 6: --print-arch is the board database's arch, as buildman prints it."""
    assert shared_arch([Board("qemu-riscv32", "riscv32"), Board("x", "riscv32")]) == "riscv32"
    with pytest.raises(BoardsError, match="^Supplied boards must share one arch$"):
        shared_arch([Board("qemu-riscv64", "riscv64"), Board("rpi", "arm")])


def test_print_prefix() -> None:
    tcs = Toolchains(aliases={"riscv": ["riscv64"]}, wrapper="ccache")
    tcs.add(tc("riscv64", "/t/riscv64-linux-gcc", wrapper="ccache"))
    tcs.add(tc("arm", "/t/arm-linux-gcc"))
    tcs.add(tc("sandbox", "/usr/bin/gcc"))
    rv = [Board("qemu-riscv64", "riscv"), Board("other", "riscv64")]
    assert print_prefix(rv, tcs) == "ccache /t/riscv64-linux-"
    assert print_prefix([Board("sandbox", "sandbox")], tcs) == ""
    mixed = [Board("qemu-riscv64", "riscv"), Board("rpi", "arm")]
    with pytest.raises(ToolchainError, match="^Supplied boards must share one toolchain$"):
        print_prefix(mixed, tcs)
    with pytest.raises(ToolchainError, match="No tool chain found for arch 'm68k'"):
        print_prefix([Board("x", "m68k")], tcs)


# --- --fetch-arch against a local server ---------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def make_tarball(dest: Path, arch: str, works: bool = True, evil: bool = False) -> None:
    """A kernel.org-shaped tarball holding a working (script) toolchain."""
    stage = dest.parent / f"stage-{arch}"
    make_gcc(stage / "gcc-13.2.0-nolibc" / f"{arch}-linux" / "bin" / f"{arch}-linux-gcc", works)
    (stage / "gcc-13.2.0-nolibc" / f"{arch}-linux" / "README").write_text("fake\n")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:xz") as tar:
        tar.add(stage / "gcc-13.2.0-nolibc", arcname="gcc-13.2.0-nolibc")
        if evil:
            info = tarfile.TarInfo("../../escaped")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    shutil.rmtree(stage)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("BUILDFLEET_FETCH_URL", raising=False)
    root = tmp_path / "www"
    index = root / "13.2.0"  # 14.2.0 is missing: the fetch must fall back
    make_tarball(index / "x86_64-gcc-13.2.0-nolibc-foo-linux.tar.xz", "foo")
    make_tarball(index / "x86_64-gcc-13.2.0-nolibc-x86_64-linux.tar.xz", "x86_64")
    make_tarball(index / "x86_64-gcc-13.2.0-nolibc-bad-linux.tar.xz", "bad", works=False)
    make_tarball(index / "x86_64-gcc-13.2.0-nolibc-evil-linux.tar.xz", "evil", evil=True)
    names = sorted(p.name for p in index.iterdir())
    names.append("x86_64-gcc-13.2.0-nolibc-gone-linux.tar.xz")  # listed, but 404
    links = "".join(f'<tr><td><a href="{n}">{n}</a></td></tr>\n' for n in names)
    (index / "index.html").write_text(f"<html><body><table>\n{links}</table></body></html>\n")
    with serve(root) as url:
        yield url


def test_fetch_arch(tmp_path: Path, mirror: str) -> None:
    host_gcc()
    home = tmp_path / "home"
    home.mkdir()
    settings = load_settings(home=home, stderr=io.StringIO())
    dest = home / ".buildman-toolchains"
    log: list[str] = []
    assert fetch_arch("foo", settings, base_url=mirror, dest=dest, log=log.append) == 0
    gcc = dest / "gcc-13.2.0-nolibc" / "foo-linux" / "bin" / "foo-linux-gcc"
    assert os.access(gcc, os.X_OK)
    assert log[:2] == [f"Checking: {mirror}14.2.0/", f"Checking: {mirror}13.2.0/"]
    assert f"Downloading: {mirror}13.2.0/x86_64-gcc-13.2.0-nolibc-foo-linux.tar.xz" in log
    assert f"Adding 'download' to config file '{home / '.buildman'}'" in log
    assert not list(dest.glob(".fetch-*"))  # the temporary download is gone
    again = load_settings(home=home)
    assert again.toolchain_paths == {"download": f"{dest}/*/*"}
    tcs = scan_toolchains(again, use_path=False)
    assert (tcs.select("foo").gcc, tcs.select("foo").priority) == (gcc, 3)

    # A second arch reuses the recorded download path; x86_64 must not match foo's
    # '..._64-' lookalikes or the host prefix of every tarball name.
    log.clear()
    assert fetch_arch("x86_64", again, base_url=mirror, dest=dest, log=log.append) == 0
    assert not any(line.startswith("Adding") for line in log)
    assert (home / ".buildman").read_text().count("download =") == 1
    assert "x86_64" in scan_toolchains(load_settings(home=home), use_path=False).archs()


def test_fetch_arch_list_and_failures(tmp_path: Path, mirror: str) -> None:
    host_gcc()
    settings = settings_from(tmp_path, "")
    (tmp_path / "bm.ini").write_text("")
    dest = tmp_path / "dl"
    log: list[str] = []
    assert fetch_arch("list", settings, base_url=mirror, dest=dest, log=log.append) == 0
    assert log[-1] == "Available architectures: bad evil foo gone x86_64"
    log.clear()
    assert fetch_arch("m68k", settings, base_url=mirror, dest=dest, log=log.append) == 2
    assert log[-1] == "Cannot find toolchain for arch 'm68k' - use 'list' to list"
    log.clear()
    assert fetch_arch("bad", settings, base_url=mirror, dest=dest, log=log.append) == 1
    assert log[-1].startswith("Error: '") and "--version' failed: broken" in log[-1]
    assert fetch_arch("gone", settings, base_url=mirror, dest=dest, log=log.append) == 1
    assert fetch_arch("evil", settings, base_url=mirror, dest=dest, log=log.append) == 1
    assert not (tmp_path / "escaped").exists() and not (dest.parent / "escaped").exists()
    assert not (dest / "gcc-13.2.0-nolibc" / "evil-linux").exists()  # nothing half-unpacked
    assert "download" not in load_settings(tmp_path / "bm.ini").toolchain_paths
    assert fetch_arch("foo,m68k", settings, base_url=mirror, dest=dest, log=log.append) == 2


def test_fetch_arch_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with serve(tmp_path) as url:
        pass  # server now closed: nothing listens on that port
    monkeypatch.setenv("BUILDFLEET_FETCH_URL", url)
    log: list[str] = []
    assert fetch_arch("foo", settings_from(tmp_path, ""), dest=tmp_path / "d",
                      log=log.append) == 1
    assert log[0] == f"Checking: {url}14.2.0/"
    assert log[-1] == f"Error: no toolchain index found at {url}"
