"""ccache by default (issue 19), with real ccache, make and gcc.

Why: where ccache is installed, builds go through it unless the user set a
``[toolchain-wrapper]`` or turned it off (``[global] ccache = false``,
``--no-ccache``). A default must not change a result: ccache masquerades as
the compilers (links first on make's PATH) and CROSS_COMPILE stays the plain
prefix, because a Makefile passing ``$(OBJCOPY)`` as one argument (U-Boot's
build_api.py, the demo's scripts/build_api.py) fails on "ccache <prefix>".
What a cache hit gives must be exactly what the compiler would have written:
every result file of a build whose compiles were all hits equals a build
without ccache (warnings included: ccache replays the compiler's stderr).
A machine without a usable ccache builds without it. Each test has a ccache
directory of its own.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from bfrun import (
    Run,
    bf_env,
    branch_revs,
    done_code,
    git,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
    sizes_of,
)
from buildfleet.build.capture import inspect_image
from buildfleet.ccache import WrapperChoice, choose_wrapper, masquerade_dir, probe
from buildfleet.demo import DemoTree, make_demo_tree
from ccachekit import (
    CCACHE,
    compiles,
    cross_compile,
    hits,
    masquerade,
    out_path,
    path_without_ccache,
    require_ccache,
    stats,
    zero_stats,
)

ARM = "arm-linux-gnueabihf-"


def _files(build: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in build.iterdir()
            if p.is_file() and p.name != "duration"}


def _compare(with_cc: Path, without: Path) -> None:
    """Every file of two results equal, but for out-env's PATH: out-env is the
    environment make ran with (as buildman writes it), and ccache's links
    were first on its PATH. CROSS_COMPILE and every other variable are equal."""
    a, b = _files(with_cc), _files(without)
    assert sorted(a) == sorted(b), with_cc
    links = masquerade(with_cc)
    assert links is not None and masquerade(without) is None, (with_cc, out_path(with_cc))
    assert a["out-env"].replace(f'PATH="{links}:'.encode(), b'PATH="') == b["out-env"]
    differ = sorted(n for n in a if a[n] != b[n] and n != "out-env")
    if differ == ["err"]:
        # make names the failed recipe's line one line early when it reaps a
        # failure while starting other jobs: compare the compiler's lines.
        a["err"], b["err"] = (b"\n".join(sorted(ln for ln in x["err"].splitlines()
                                                if not ln.startswith(b"make")))
                              for x in (a, b))
        differ = [n for n in differ if a[n] != b[n]]
    assert differ == [], (with_cc, differ)


def test_all_hit_build_equals_a_build_without_ccache(tmp_path: Path) -> None:
    require_cross()
    require_ccache()
    tree = make_demo_tree(tmp_path / "src")
    assert tree.warning_upto is not None
    boards = sorted({"sandbox", "acme_arm1", tree.broken_target, tree.warning_targets[0]})
    cache = tmp_path / "cc"
    env = bf_env({"CCACHE_DIR": str(cache)})
    settings = settings_file(tmp_path)
    # -T 1: every board builds in the same worktree each time, as a re-run of a
    # branch does where a board lands in the slot that built it before.
    # --no-skip: every commit compiles (a file that warned is compiled again at
    # each later commit, so its warning comes from the cache each time).
    args = ["-b", "demo", "--boards", ",".join(boards), "-r", "-T", "1", "--no-skip",
            "-G", str(settings)]
    first = run_bf([*args, "-o", str(tmp_path / "on")], tree.path, env)
    assert first.returncode == 100, first  # the demo breaks a board at one commit
    cold = stats(cache)
    assert cold.get("cache_miss", 0) > 0, cold
    zero_stats(cache)
    again = run_bf([*args, "-f", "-o", str(tmp_path / "on")], tree.path, env)
    assert again.returncode == 100, again
    warm = stats(cache)
    assert warm.get("cache_miss", 0) == 0 and hits(warm) >= compiles(cold) > 0, (cold, warm)
    zero_stats(cache)
    off = run_bf([*args, "--no-ccache", "-o", str(tmp_path / "no")], tree.path, env)
    assert off.returncode == 100, off
    assert compiles(stats(cache)) == 0  # --no-ccache: ccache is not called at all

    warned = 0
    for rev in branch_revs(tree.path, "demo"):
        for target in boards:
            with_cc = result_dir(tmp_path / "on" / "demo", rev, target)
            _compare(with_cc, result_dir(tmp_path / "no" / "demo", rev, target))
            assert "ccache" not in cross_compile(with_cc), with_cc
            err = with_cc / "err"
            warned += err.is_file() and tree.warning_text in err.read_text()
    # The warning came from the cache (every compile was a hit) at each commit since
    # the one that added it, as the compiler gave it without ccache.
    assert warned >= 2, warned


def test_an_object_compiled_in_another_worktree_is_not_used(tmp_path: Path) -> None:
    """The same sources built in a second worktree (another output tree: what another
    slot is too) do not take the first worktree's objects, whose debug info names
    that worktree: mixed with objects compiled here, they would add a second
    copy of the directory to the ELF's debug strings (``u-boot.objdump`` differs).
    This is why ccache keeps hashing the directory (no ``CCACHE_NOHASHDIR``)."""
    require_cross()
    require_ccache()
    tree = make_demo_tree(tmp_path / "src", boards=4, commits=1)
    cache = tmp_path / "cc"
    env = bf_env({"CCACHE_DIR": str(cache)})
    args = ["-b", "demo", "-c", "1", "--boards", "acme_arm1", "-T", "1", "-r", "-G",
            str(settings_file(tmp_path))]
    first = run_bf([*args, "-o", str(tmp_path / "o1")], tree.path, env)
    assert first.returncode == 0, first
    # Hits within one build: a file whose SPL and U-Boot compiles preprocess the same.
    alone = stats(cache)
    assert compiles(alone) > 0
    # A new tip that changes one source: built in a new worktree, that file must be
    # compiled while every other one could come from the first worktree's cache.
    git(tree.path, "checkout", "-q", "demo")
    with (tree.path / "drivers" / "serial.c").open("a") as f:
        f.write("int serial_spare(void) { return 7; }\n")
    git(tree.path, "commit", "-qam", "serial: a spare function")
    zero_stats(cache)
    second = run_bf([*args, "-o", str(tmp_path / "o2")], tree.path, env)
    assert second.returncode == 0, second
    assert hits(stats(cache)) == hits(alone), (alone, stats(cache))  # none from o1
    off = run_bf([*args, "--no-ccache", "-o", str(tmp_path / "o3")], tree.path, env)
    assert off.returncode == 0, off
    # Results only: not .bm-work/acme_arm1, the board's kept build directory.
    (with_cc,) = (tmp_path / "o2" / "demo").glob("[!.]*/acme_arm1")
    (without,) = (tmp_path / "o3" / "demo").glob("[!.]*/acme_arm1")
    assert with_cc.parent.name == without.parent.name
    _compare(with_cc, without)


def _current(tree: DemoTree, out: Path, env: dict[str, str], *extra: str,
             settings: Path) -> Run:
    run = run_bf(["--boards", "acme_arm1,sandbox", "-o", str(out), "-G", str(settings),
                  *extra], tree.path, env)
    assert run.returncode == 0, run
    return run


def _built(out: Path, target: str) -> Path:
    found = out / "current" / target
    assert (found / "done").is_file(), found
    return found


def test_off_by_setting_flag_or_a_machine_without_ccache(tmp_path: Path) -> None:
    require_cross()
    require_ccache()
    tree = make_demo_tree(tmp_path / "src", boards=4, commits=1)
    cache = tmp_path / "cc"
    env = bf_env({"CCACHE_DIR": str(cache)})
    plain = settings_file(tmp_path)

    _current(tree, tmp_path / "on", env, settings=plain)
    for target in ("acme_arm1", "sandbox"):
        assert masquerade(_built(tmp_path / "on", target)) is not None, target
    assert cross_compile(_built(tmp_path / "on", "acme_arm1")) == ARM
    assert cross_compile(_built(tmp_path / "on", "sandbox")) == ""
    assert compiles(stats(cache)) > 0

    off = tmp_path / "off.ini"
    off.write_text("[global]\nccache = false\n")
    nopath = path_without_ccache(tmp_path / "bin")
    bare = bf_env({"CCACHE_DIR": str(cache), "PATH": f"{Path(env['PATH'].split(':')[0])}:"
                                                    f"{nopath}"})
    # -p: CROSS_COMPILE names the compiler by its absolute path, which ccache's
    # links on PATH cannot stand in for: built without ccache.
    for name, run_env, extra, settings in (("flag", env, ["--no-ccache"], plain),
                                            ("setting", env, [], off),
                                            ("absent", bare, [], plain),
                                            ("full-path", env, ["-p"], plain)):
        zero_stats(cache)
        run = _current(tree, tmp_path / name, run_env, *extra, settings=settings)
        assert "Warning" not in run.stderr, run
        cross = cross_compile(_built(tmp_path / name, "acme_arm1"))
        assert cross == ARM if name != "full-path" else cross.endswith(f"/{ARM}"), (name, cross)
        assert cross_compile(_built(tmp_path / name, "sandbox")) == "", name
        for target in ("acme_arm1", "sandbox"):
            assert masquerade(_built(tmp_path / name, target)) is None, (name, target)
        assert compiles(stats(cache)) == 0, name

    # A ccache that cannot write its cache would fail every compile: not used, said once.
    run = _current(tree, tmp_path / "ro", bf_env({"CCACHE_DIR": "/dev/null/cache"}),
                   settings=plain)
    warnings = [ln for ln in run.stderr.splitlines() if ln.startswith("Warning:")]
    assert warnings == ["Warning: ccache cannot write its cache_dir /dev/null/cache; "
                        "building without ccache"], run
    assert cross_compile(_built(tmp_path / "ro", "acme_arm1")) == ARM
    assert masquerade(_built(tmp_path / "ro", "acme_arm1")) is None

    # A user's [toolchain-wrapper] wins over the default, as it is: in CROSS_COMPILE,
    # as buildman puts it, where the demo's build_api.py rule (as U-Boot's) fails
    # on the two-word $(OBJCOPY).
    wrapped = tmp_path / "wrapped.ini"
    wrapped.write_text("[toolchain-wrapper]\nwrapper = env\n")
    run = run_bf(["--boards", "acme_arm1", "-o", str(tmp_path / "env"), "-G", str(wrapped)],
                 tree.path, env)
    assert run.returncode == 100, run
    built = _built(tmp_path / "env", "acme_arm1")
    assert cross_compile(built) == f"env {ARM}"
    assert masquerade(built) is None
    assert f"unrecognized arguments: {ARM}objcopy" in (built / "err").read_text()


def test_reproduce_script_builds_without_a_missing_ccache(tmp_path: Path) -> None:
    """A result built through ``[toolchain-wrapper] wrapper = ccache`` rebuilds by its
    ``reproduce`` script on a machine without ccache: the wrapper is dropped with
    a note. (The default ccache is not in CROSS_COMPILE: its script is a build
    without ccache anyway.) The demo's build_api.py rule fails on a two-word
    $(OBJCOPY), as U-Boot's does: with the user's wrapper, that is the result
    (buildman's behaviour), and the script, without it, builds."""
    require_cross()
    require_ccache()
    tree = make_demo_tree(tmp_path / "src", boards=4, commits=1)
    env = bf_env({"CCACHE_DIR": str(tmp_path / "cc")})
    wrapped = tmp_path / "wrapped.ini"
    wrapped.write_text("[toolchain-wrapper]\nwrapper = ccache\n")
    run = run_bf(["--boards", "acme_arm1", "-o", str(tmp_path / "out"), "-G", str(wrapped)],
                 tree.path, env)
    assert run.returncode == 100, run
    result = _built(tmp_path / "out", "acme_arm1")
    assert cross_compile(result) == f"ccache {ARM}"
    checkout = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(tree.path), str(checkout)], check=True,
                   capture_output=True, timeout=60)
    nopath = path_without_ccache(tmp_path / "bin")
    proc = subprocess.run(["sh", str(result / "reproduce"), str(tmp_path / "build")],
                          cwd=checkout, env={"PATH": str(nopath), "HOME": str(tmp_path)},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)
    assert done_code(result) != 0
    assert "unrecognized arguments: arm-linux-gnueabihf-objcopy" in (result / "err").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reproduce: no ccache here (the toolchain wrapper buildfleet used); " \
        "building without it" in proc.stderr
    found = inspect_image(tmp_path / "build" / "u-boot").sizes
    assert found is not None and found[:3] == sizes_of(result)["u-boot"]
    assert (tmp_path / "build" / "include" / "generated" / "api.lst").is_file()


def test_probe_and_choice_of_the_wrapper(tmp_path: Path) -> None:
    require_ccache()
    env = {"PATH": "/usr/bin", "CCACHE_DIR": str(tmp_path / "cc"), "HOME": str(tmp_path)}
    assert probe(env).usable
    assert choose_wrapper(None, True, env) == WrapperChoice(ccache=CCACHE)
    assert choose_wrapper("", False, env) == WrapperChoice()  # turned off
    assert choose_wrapper("distcc", True, env) == WrapperChoice("distcc")  # the user's wins
    nopath = path_without_ccache(tmp_path / "bin")
    assert probe(dict(env, PATH=str(nopath))) == probe(dict(env, PATH=""))
    assert not probe(dict(env, PATH=str(nopath))).usable
    assert choose_wrapper(None, True, dict(env, PATH=str(nopath))) == WrapperChoice()
    broken = probe(dict(env, CCACHE_DIR="/dev/null/x"))
    assert not broken.usable and broken.note == "ccache cannot write its cache_dir /dev/null/x"


def test_masquerade_directory_is_shared_and_made_whole(tmp_path: Path) -> None:
    """Runs starting together get one directory, holding exactly the compiler names
    as links to ccache (never a half-made one); through it, the compiler named on
    PATH is ccache calling the real one found after it."""
    require_cross()
    require_ccache()
    base = tmp_path / "bin"
    names = [f"{ARM}gcc", f"{ARM}cc"]
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(masquerade_dir(CCACHE, names, base)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 8 and len(set(made)) == 1, made
    assert sorted(p.name for p in base.iterdir()) == [made[0].name]  # no leftover
    assert sorted(os.listdir(made[0])) == sorted(names)
    assert all(os.readlink(made[0] / n) == CCACHE for n in names)
    assert masquerade_dir(CCACHE, ["gcc", "cc"], base) != made[0]
    cache = tmp_path / "cc"
    src = tmp_path / "a.c"
    src.write_text("int a(void) { return 1; }\n")
    env = {"PATH": f"{made[0]}:/usr/bin", "CCACHE_DIR": str(cache), "HOME": str(tmp_path)}
    for _ in range(2):
        subprocess.run(["sh", "-c", f"{ARM}gcc -c {src} -o {tmp_path / 'a.o'}"], env=env,
                       check=True, timeout=60)
    assert hits(stats(cache)) == 1 and stats(cache).get("cache_miss") == 1
