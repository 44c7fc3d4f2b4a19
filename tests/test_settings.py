"""Tests for the settings file reader (buildfleet.settings)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from buildfleet.settings import (
    DEFAULT_FILE_TEXT,
    SettingsError,
    add_download_path,
    expand_make_flags,
    load_settings,
)

FULL = """\
[toolchain]
root = /
Mine = ~/tools/*
bare-dir

[toolchain-prefix]
arm = /opt/arm/bin/arm-none-eabi-

[toolchain-alias]
riscv = riscv32 riscv64
x86 = i386

[toolchain-wrapper]
first = distcc
wrapper = ccache

[make-flags]
src = /home/me/src
Qemu_ARM = "KCFLAGS=-O2 -g" LOCALVERSION=${target}-x ${extra}
extra = FOO=${src}/bar

[global]
allow-missing = multiple branch
busy_load = 2.5
min_disk_mb = 50

[machines]
ruru
BigBox = builder@bigbox.example.com
Tiny = tiny.local

[machine:BigBox]
max_boards = 16
min_mem_mb = 2048

[machine:Tiny]
busy_load = 0.5
"""


def write(tmp_path: Path, text: str, name: str = "bm.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_section_parsed(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL))
    assert settings.toolchain_paths == {"root": "/", "Mine": "~/tools/*", "bare-dir": "bare-dir"}
    assert settings.toolchain_prefix == {"arm": "/opt/arm/bin/arm-none-eabi-"}
    assert settings.toolchain_alias == {"riscv": ["riscv32", "riscv64"], "x86": ["i386"]}
    assert settings.toolchain_wrapper == "ccache"  # the last line counts
    assert settings.make_flags["Qemu_ARM"].startswith('"KCFLAGS')
    assert settings.allow_missing == {"multiple", "branch"}
    assert settings.warnings == []
    names = [(m.name, m.host) for m in settings.machines]
    assert names == [("ruru", "ruru"), ("BigBox", "builder@bigbox.example.com"),
                     ("Tiny", "tiny.local")]


def test_machine_case_kept_and_availability(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL))
    big = settings.machine("BigBox")
    assert big is not None
    assert settings.machine("bigbox") is None
    assert (big.max_boards, big.busy_load, big.min_disk_mb, big.min_mem_mb) == (16, 2.5, 50, 2048)
    tiny = settings.machine("Tiny")
    assert tiny is not None
    assert (tiny.max_boards, tiny.busy_load, tiny.min_disk_mb, tiny.min_mem_mb) == (0, 0.5, 50, 512)
    ruru = settings.machine("ruru")
    assert ruru is not None
    assert (ruru.busy_load, ruru.min_disk_mb, ruru.min_mem_mb) == (2.5, 50, 512)


def test_defaults_without_global(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[machines]\nm1 = u@h\n"))
    (m1,) = settings.machines
    assert (m1.max_boards, m1.busy_load, m1.min_disk_mb, m1.min_mem_mb) == (0, 0.8, 1000, 512)


def test_ccache_setting(tmp_path: Path) -> None:
    """``[global] ccache``: on unless turned off; a bad word is a one-line error."""
    assert load_settings(write(tmp_path, "[global]\n")).ccache is True
    settings = load_settings(write(tmp_path, "[global]\nccache = false\n"))
    assert settings.ccache is False and settings.warnings == []
    assert load_settings(write(tmp_path, "[global]\nccache = yes\n")).ccache is True
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, "[global]\nccache = maybe\n"))
    assert str(info.value) == f"{tmp_path}/bm.ini: [global] ccache: 'maybe' is not true or false"


def test_make_flags_expansion(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL))
    assert settings.make_flags_for("Qemu_ARM") == [
        "KCFLAGS=-O2 -g", "LOCALVERSION=Qemu_ARM-x", "FOO=/home/me/src/bar"]
    assert settings.make_flags_for("qemu_arm") == []  # case-sensitive target
    assert settings.make_flags_for("nothing") == []


def test_make_flags_unknown_empty_and_quotes() -> None:
    flags = {"b": 'A=1 ${missing} "B=x y"z ""', "t": "${target}"}
    assert expand_make_flags(flags, "b") == ["A=1", "B=x yz"]
    assert expand_make_flags(flags, "t") == ["t"]


def test_make_flags_cycle_is_an_error() -> None:
    flags = {"b": "X=${loop}", "loop": "${again}", "again": "${loop}"}
    with pytest.raises(SettingsError, match="cycle: b -> loop -> again -> loop"):
        expand_make_flags(flags, "b")


@pytest.mark.parametrize("text, message", [
    ("[toolchain]\nx = /\n  \n= oops\n", "bm.ini:4: bad line '= oops'"),
    ("stray = 1\n[toolchain]\n", "bm.ini:1: line before any [section]: 'stray = 1'"),
    ("[machines]\na = h1\na = h2\n", "bm.ini:3: duplicate key 'a' in [machines]"),
    ("[global]\n[make-flags]\n[global]\n", "bm.ini:3: duplicate section [global]"),
])
def test_malformed_file_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert str(info.value) == f"{tmp_path}/{message}"
    assert "\n" not in str(info.value)


def test_malformed_default_file_named_with_tilde(tmp_path: Path) -> None:
    (tmp_path / ".buildman").write_text("[toolchain]\na = 1\n\n\n\n\nxyz = \n= x\n")
    with pytest.raises(SettingsError, match=r"^~/\.buildman:8: bad line '= x'$"):
        load_settings(home=tmp_path)


@pytest.mark.parametrize("text, message", [
    ("[machines]\nm\n[machine:m]\nmax_boards = lots\n",
     "[machine:m] max_boards: 'lots' is not a whole number"),
    ("[machines]\nm\n[machine:m]\nbusy_load = -1\n",
     "[machine:m] busy_load: '-1' must not be negative"),
    ("[global]\nmin_disk_mb = 1.5\n", "[global] min_disk_mb: '1.5' is not a whole number"),
    ("[machines]\nm\n[machine:m]\nmax_boards\n",
     "[machine:m] max_boards: no value given"),
])
def test_bad_numbers(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text))
    assert str(info.value) == f"{tmp_path}/bm.ini: {message}"


def test_unknown_keys_warn(tmp_path: Path) -> None:
    text = ("[global]\ncolour = blue\nallow-missing = sometimes always\n"
            "[machines]\nm\n[machine:m]\nspeed = 9\n[machine:ghost]\nmax_boards = 1\n"
            "[patman]\nx = 1\n")
    settings = load_settings(write(tmp_path, text))
    shown = f"{tmp_path}/bm.ini"
    assert settings.allow_missing == {"always"}
    assert settings.warnings == [
        f"{shown}: [global] unknown key 'colour' ignored",
        f"{shown}: [global] allow-missing: unknown word 'sometimes' ignored "
        "(use always, multiple, branch)",
        f"{shown}: unknown section [patman] ignored",
        f"{shown}: [machine:m] unknown key 'speed' ignored",
        f"{shown}: [machine:ghost] names no machine in [machines], ignored",
    ]


def test_empty_wrapper_warns(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[toolchain-wrapper]\nwrapper =\n"))
    assert settings.toolchain_wrapper is None
    assert any("Wrapper not found" in w for w in settings.warnings)


def test_missing_default_file_created(tmp_path: Path) -> None:
    err = io.StringIO()
    settings = load_settings(home=tmp_path, stderr=err)
    created = tmp_path / ".buildman"
    assert created.read_text() == DEFAULT_FILE_TEXT
    lines = err.getvalue().splitlines()
    assert lines[:2] == ["No config file found ~/.buildman", "Creating one..."]
    assert "--fetch-arch" in lines[2]
    assert settings.path == created
    assert settings.toolchain_alias == {"riscv": ["riscv32"], "sh": ["sh4"], "x86": ["i386"]}
    assert settings.toolchain_paths == {}  # no slow 'other = /'
    assert settings.machines == [] and settings.warnings == []
    # Second load reads the file quietly.
    err2 = io.StringIO()
    assert load_settings(home=tmp_path, stderr=err2).toolchain_alias == settings.toolchain_alias
    assert err2.getvalue() == ""


def test_missing_default_not_created(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, create=False)
    assert not (tmp_path / ".buildman").exists()
    assert settings.toolchain_paths == {} and settings.machines == []


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ini"
    with pytest.raises(SettingsError, match=f"^{missing}: settings file not found$"):
        load_settings(missing, home=tmp_path)
    assert not missing.exists()


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.ini"
    path.write_bytes(b"[global]\n\xff\xfe\n")
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_settings(path)


def test_percent_and_colon_values(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[make-flags]\nb: KCFLAGS=-D X=100%\n"))
    assert settings.make_flags_for("b") == ["KCFLAGS=-D", "X=100%"]


def test_add_download_path_keeps_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# top\n[toolchain]\nmine = /opt\n\n[global]\n# note\n")
    settings = load_settings(path)
    add_download_path(settings, "/h/.buildman-toolchains/*/*")
    assert path.read_text() == ("# top\n[toolchain]\nmine = /opt\n"
                                "download = /h/.buildman-toolchains/*/*\n\n[global]\n# note\n")
    assert settings.toolchain_paths["download"] == "/h/.buildman-toolchains/*/*"
    add_download_path(settings, "/other/*/*")  # replaced, never duplicated
    assert load_settings(path).toolchain_paths == {"mine": "/opt", "download": "/other/*/*"}


def test_add_download_path_new_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[global]\n")
    settings = load_settings(path)
    add_download_path(settings, "/d/*/*")
    assert load_settings(path).toolchain_paths == {"download": "/d/*/*"}


def test_add_download_path_to_created_default(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, stderr=io.StringIO())
    add_download_path(settings, f"{tmp_path}/.buildman-toolchains/*/*")
    again = load_settings(home=tmp_path)
    assert again.toolchain_paths == {"download": f"{tmp_path}/.buildman-toolchains/*/*"}
    assert again.warnings == []
