"""The dispatch policies, the cost model and the simulated fleet."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildfleet.build.makecmd import make_jobs
from buildfleet.fleet.dispatch.costaware import CostAwarePolicy
from buildfleet.fleet.dispatch.costs import CostModel, load_history
from buildfleet.fleet.dispatch.policy import FifoPolicy
from buildfleet.fleet.dispatch.simulate import SimMachine, lower_bound, simulate
from buildfleet.model import LOCAL, Board, BuildJob, Commit
from buildfleet.results.history import scan_history

COMMIT = (Commit(0, "a" * 40, "one"),)


def job(target: str, arch: str = "arm", commits: int = 1) -> BuildJob:
    return BuildJob(Board(target, arch), tuple(Commit(i, "a" * 40, "s") for i in range(commits)))


def anything(_board: Board) -> bool:
    return True


def only(*archs: str):
    return lambda board: board.arch in archs


def model(**secs: float) -> CostModel:
    return CostModel(board_seconds=dict(secs))


# -- FIFO baseline ----------------------------------------------------------------
def test_fifo_serves_in_list_order() -> None:
    p = FifoPolicy()
    p.add_executor("a", 4, anything)
    p.add_jobs([job("x"), job("y"), job("z")])
    assert [p.take("a", 0.0).board.target for _ in range(3)] == ["x", "y", "z"]  # type: ignore[union-attr]
    assert p.take("a", 0.0) is None
    assert not p.all_done()
    for t in "xyz":
        assert p.finished("a", t, 1.0)
    assert p.all_done()
    assert not p.has_work_for("a")


@pytest.mark.parametrize("policy_cls", [FifoPolicy, CostAwarePolicy])
def test_jobs_go_only_to_executors_that_can_build_them(policy_cls: type[FifoPolicy]) -> None:
    p = policy_cls()
    p.add_executor("armonly", 2, only("arm"))
    p.add_jobs([job("r1", "riscv"), job("a1", "arm"), job("m1", "mips")])
    got = p.take("armonly", 0.0)
    assert got is not None and got.board.target == "a1"
    assert p.take("armonly", 0.0) is None
    assert sorted(j.board.target for j in p.unbuildable()) == ["m1", "r1"]
    p.add_executor("rv", 1, only("riscv"))
    got = p.take("rv", 0.0)
    assert got is not None and got.board.target == "r1"
    assert [j.board.target for j in p.unbuildable()] == ["m1"]


@pytest.mark.parametrize("policy_cls", [FifoPolicy, CostAwarePolicy])
def test_failed_requeues_then_abandons(policy_cls: type[FifoPolicy]) -> None:
    p = policy_cls()
    for name in ("a", "b", "c", "d"):
        p.add_executor(name, 1, anything)
    p.add_jobs([job("x"), job("y")])
    assert p.take("a", 0.0).board.target == "x"  # type: ignore[union-attr]
    p.failed("a", "x", "ssh dropped", now=1.0)
    assert "x" in p.pending and not p.abandoned
    # Back in the pool, but never again on the executor it failed on.
    assert p.take("a", 1.0).board.target == "y"  # type: ignore[union-attr]
    assert p.take("b", 1.0).board.target == "x"  # type: ignore[union-attr]
    p.failed("b", "x", "ssh dropped", now=2.0)
    assert p.take("c", 2.0).board.target == "x"  # type: ignore[union-attr]
    p.failed("c", "x", "worker died", now=3.0)
    assert p.abandoned == {"x": "worker died"}
    assert "x" not in p.pending
    assert p.take("d", 3.0) is None
    assert p.finished("a", "y", 4.0)
    assert p.all_done()


@pytest.mark.parametrize("policy_cls", [FifoPolicy, CostAwarePolicy])
def test_quarantine_after_two_executor_failures(policy_cls: type[FifoPolicy]) -> None:
    p = policy_cls()
    p.add_executor("flaky", 2, anything)
    p.add_jobs([job("x")])
    assert not p.machine_failed("flaky")
    assert p.usable("flaky")
    assert p.machine_failed("flaky")  # this one quarantines it
    assert not p.usable("flaky")
    assert p.take("flaky", 0.0) is None
    assert not p.has_work_for("flaky")
    assert [j.board.target for j in p.unbuildable()] == ["x"]


@pytest.mark.parametrize("policy_cls", [FifoPolicy, CostAwarePolicy])
def test_machine_health_survives_a_restarted_worker(policy_cls: type[FifoPolicy]) -> None:
    """Health is kept by machine name: a worker started again inherits the record."""
    p = policy_cls()
    p.add_executor("flaky", 1, anything)
    p.add_jobs([job("x"), job("y")])
    assert p.take("flaky", 0.0) is not None
    p.machine_failed("flaky")  # its worker was lost
    p.remove_executor("flaky", now=1.0)
    p.add_executor("flaky", 1, anything, now=2.0)  # a fresh worker on the same machine
    assert p.take("flaky", 2.0) is not None
    assert p.machine_failed("flaky")  # the second failure of the machine, not the first
    p.remove_executor("flaky", now=3.0)
    p.add_executor("flaky", 1, anything, now=4.0)
    assert p.take("flaky", 4.0) is None
    assert not p.has_work_for("flaky")


@pytest.mark.parametrize("policy_cls", [FifoPolicy, CostAwarePolicy])
def test_remove_executor_returns_in_flight_jobs(policy_cls: type[FifoPolicy]) -> None:
    p = policy_cls()
    p.add_executor("gone", 3, anything)
    p.add_executor("stays", 1, anything)
    p.add_jobs([job("x"), job("y"), job("z")])
    taken = {p.take("gone", 0.0).board.target for _ in range(2)}  # type: ignore[union-attr]
    back = p.remove_executor("gone", now=5.0)
    assert {j.board.target for j in back} == taken
    assert set(p.pending) == {"x", "y", "z"}
    got = {p.take("stays", 5.0).board.target}  # type: ignore[union-attr]
    assert got <= {"x", "y", "z"}
    assert p.remove_executor("never-there") == []


# -- cost-aware -------------------------------------------------------------------
def test_longest_expected_first() -> None:
    p = CostAwarePolicy(model(small=5.0, big=100.0, mid=30.0))
    p.add_executor("a", 8, anything)
    p.add_jobs([job("small"), job("unknown"), job("mid"), job("big")])
    order = [p.take("a", 0.0).board.target for _ in range(4)]  # type: ignore[union-attr]
    # "unknown" (the median of known boards, 30) is the only board of a group
    # nothing measured: it goes first, as a scout; then longest first.
    assert order == ["unknown", "big", "mid", "small"]


def test_job_cost_counts_commits_and_arch_fallback() -> None:
    m = CostModel(board_seconds={"a1": 10.0, "a2": 30.0, "r1": 100.0},
                  board_arch={"a1": "arm", "a2": "arm", "r1": "riscv"})
    assert m.estimate(Board("a3", "arm")) == 20.0
    assert m.estimate(Board("r2", "riscv")) == 100.0
    assert m.estimate(Board("m1", "mips")) == 30.0  # median of all boards
    assert CostModel().estimate(Board("m1", "mips")) == 1.0
    assert m.job_cost(job("a1", "arm", commits=3)) == 30.0


def test_big_board_waits_for_the_executor_that_finishes_it_first() -> None:
    p = CostAwarePolicy(model(big=100.0, small=10.0), hedging=False)
    p.add_executor("slow", 1, anything, speed=0.25)
    p.add_executor("fast", 1, anything, speed=1.0)
    p.add_jobs([job("big"), job("small")])
    # The slow machine asks first: it would need 400 s for "big", the free
    # fast one 100 s, so the slow one gets the small board.
    assert p.take("slow", 0.0).board.target == "small"  # type: ignore[union-attr]
    assert p.take("fast", 0.0).board.target == "big"  # type: ignore[union-attr]


def test_slow_executor_is_refused_then_served_when_nobody_better_comes() -> None:
    p = CostAwarePolicy(model(big=100.0, long=1000.0, other=100.0), hedging=False)
    p.add_executor("fast", 1, anything, speed=1.0)
    p.add_executor("slow", 1, anything, speed=0.5)
    p.add_jobs([job("big"), job("long"), job("other")])
    assert p.take("fast", 0.0).board.target == "long"  # type: ignore[union-attr]
    # fast is busy for 1000 s: slow (200 s) is the earliest finisher, it gets work.
    assert p.take("slow", 0.0).board.target in {"big", "other"}  # type: ignore[union-attr]


def test_slow_executor_refused_when_fast_one_frees_soon() -> None:
    p = CostAwarePolicy(model(big=100.0, tiny=1.0, big2=100.0), hedging=False)
    p.add_executor("fast", 1, anything, speed=1.0)
    p.add_executor("slow", 1, anything, speed=0.2)
    p.add_jobs([job("tiny"), job("big")])
    assert p.take("fast", 0.0).board.target == "big"  # type: ignore[union-attr]
    assert p.take("slow", 0.0).board.target == "tiny"  # type: ignore[union-attr]
    p.add_jobs([job("big2")])
    # fast ends "big" at 100 and would end big2 at 200; slow would need 500.
    assert p.take("slow", 1.0) is None
    assert p.has_work_for("slow")
    assert p.finished("fast", "big", 100.0)
    assert p.take("fast", 100.0).board.target == "big2"  # type: ignore[union-attr]


def test_hedging_duplicates_only_when_pool_is_empty_and_first_finisher_wins() -> None:
    p = CostAwarePolicy(model(long=100.0, short=10.0, extra=9.0))
    p.add_executor("a", 1, anything)
    p.add_executor("b", 1, anything)
    p.add_executor("c", 1, only("mips"))
    p.add_jobs([job("long"), job("short"), job("extra")])
    assert p.take("a", 0.0).board.target == "long"  # type: ignore[union-attr]
    assert p.take("b", 0.0).board.target == "short"  # type: ignore[union-attr]
    assert p.hedge("b", 0.0) is None  # "extra" is still pending for b
    assert p.finished("b", "short", 10.0)
    assert p.take("b", 10.0).board.target == "extra"  # type: ignore[union-attr]
    assert p.finished("b", "extra", 19.0)
    assert p.take("b", 150.0) is None
    # "long" is overdue on a (expected end 100); an overdue copy is assumed to
    # need half its age again: at 150 that is 225, before b could end (250).
    assert p.hedge("b", 150.0) is None
    dup = p.hedge("b", 250.0)  # a: 375, b: 350
    assert dup is not None and dup.board.target == "long"
    assert p.jobs["long"].owners == {"a", "b"}
    assert p.hedge("b", 250.0) is None  # never twice, never its own
    assert p.hedge("c", 250.0) is None  # c cannot build it
    assert p.finished("b", "long", 350.0)
    assert p.losers("long") == ["a"]
    assert p.losers("long") == []
    assert not p.finished("a", "long", 360.0)  # the loser's result is discarded
    assert p.all_done()
    st_ = p.stats
    assert st_.executors["b"].hedges == 1
    assert st_.executors["a"].wasted == pytest.approx(350.0)
    # Winning copies: short 10 s, extra 9 s, long (b's copy) 100 s.
    assert st_.useful == pytest.approx(119.0)
    assert st_.busy_time("b") == pytest.approx(119.0)


def test_hedging_off_gives_nothing() -> None:
    p = CostAwarePolicy(model(x=10.0), hedging=False)
    p.add_executor("a", 1, anything)
    p.add_executor("b", 1, anything)
    p.add_jobs([job("x")])
    assert p.take("a", 0.0) is not None
    assert p.hedge("b", 100.0) is None


def test_stats_efficiency_tail_busy_idle() -> None:
    p = FifoPolicy()
    p.add_executor("a", 1, anything, now=0.0)
    p.add_executor("b", 1, anything, now=0.0)
    p.add_jobs([job("x"), job("y")])
    p.take("a", 0.0)
    p.take("b", 0.0)
    assert p.finished("a", "x", 10.0)
    assert p.finished("b", "y", 20.0)
    s = p.stats
    assert s.wall == 20.0
    assert s.efficiency == pytest.approx(30.0 / 40.0)
    assert s.tail == 10.0
    assert p.busy_time("a") == 10.0 and p.idle_time("a") == 10.0
    assert p.idle_time("b") == 0.0
    assert s.summary_line() == ("Dispatch: wall 20.0s, scheduling efficiency 75.0%, "
                                "tail 10.0s, hedged 0, re-dispatched 0, wasted 0.0 slot-s")
    assert s.machine_lines({"a": 1})[0] == ("  a: 1 boards, 1 results, 1 slots, busy 10.0 "
                                            "slot-s, idle 10.0 slot-s")


@pytest.mark.parametrize(("threads", "max_boards", "in_flight", "want"), [
    (256, 64, 64, 4),     # steady state: the seed's example
    (256, 64, 32, 16),    # tail ramp-up: twice the share
    (256, 64, 1, 256),    # never above the machine's threads
    (8, 0, 8, 1),         # default cap = threads
    (8, 0, 3, 5),
    (4, 64, 0, 4),
    (2, 2, 5, 1),         # never below 1
])
def test_make_jobs(threads: int, max_boards: int, in_flight: int, want: int) -> None:
    assert make_jobs(threads, max_boards, in_flight) == want


# -- simulation ---------------------------------------------------------------------
def world(n: int, seed: int) -> tuple[list[BuildJob], dict[str, float]]:
    rng = random.Random(seed)
    jobs, work = [], {}
    for i in range(n):
        arch = rng.choice(["arm", "arm", "riscv", "mips"])
        t = f"b{i:03d}"
        work[t] = 60 * rng.lognormvariate(0, 0.6) * (10 if rng.random() < 0.03 else 1)
        jobs.append(BuildJob(Board(t, arch), COMMIT))
    return jobs, work


FLEET = [SimMachine("m8", 8, 1.0), SimMachine("m4", 4, 0.8, frozenset({"arm", "riscv"})),
         SimMachine("m2", 2, 0.4, frozenset({"arm", "mips"}))]


def test_warm_policy_beats_fifo_and_reaches_near_the_bound() -> None:
    jobs, work = world(200, 3)
    warm = CostModel(board_seconds={t: w * random.Random(t).uniform(0.9, 1.1)
                                    for t, w in work.items()},
                     host_speed={m.name: m.speed for m in FLEET})
    fifo = simulate(FifoPolicy(), FLEET, jobs, work)
    smart = simulate(CostAwarePolicy(warm), FLEET, jobs, work)
    assert len(smart.winners) == len(fifo.winners) == 200
    assert smart.makespan < fifo.makespan
    assert smart.ratio < 1.1
    assert smart.lower_bound == pytest.approx(lower_bound(work, FLEET))


machines_st = st.lists(
    st.tuples(st.integers(1, 4), st.sampled_from([1.0, 0.7, 0.3]),
              st.sampled_from([None, ("arm",), ("arm", "riscv"), ("mips", "riscv")])),
    min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(machines=machines_st, n=st.integers(0, 40), seed=st.integers(0, 10_000),
       fail_rate=st.sampled_from([0.0, 0.1, 0.3]), cancel=st.booleans(),
       smart=st.booleans(), hedge=st.booleans())
def test_no_job_lost_or_finished_twice(machines: list, n: int, seed: int, fail_rate: float,
                                       cancel: bool, smart: bool, hedge: bool) -> None:
    fleet = [SimMachine(f"m{i}", slots, speed, frozenset(archs) if archs else None)
             for i, (slots, speed, archs) in enumerate(machines)]
    jobs, work = world(n, seed)
    costs = CostModel(board_seconds={t: w * 1.5 for t, w in list(work.items())[::2]})
    policy = CostAwarePolicy(costs, hedging=hedge) if smart else FifoPolicy()
    res = simulate(policy, fleet, jobs, work, hedge=hedge, cancel_losers=cancel,
                   fail_rate=fail_rate, seed=seed)
    targets = {j.board.target for j in jobs}
    assert all(count == 1 for count in res.finished_calls.values())
    assert not set(res.winners) & res.abandoned
    left = targets - set(res.winners) - res.abandoned
    # Whatever is neither built nor abandoned is pending and nobody can build it.
    assert left == {j.board.target for j in policy.unbuildable()}
    assert set(policy.pending) == left
    for name in policy.executors:
        assert not policy.executors[name].in_flight
    if fail_rate == 0.0:
        assert set(res.winners) | left == targets and not res.abandoned


# -- cost model from the output tree ----------------------------------------------------
def write_result(d: Path, seconds: str | None, host: str | None = None) -> None:
    d.mkdir(parents=True)
    (d / "done").write_text("0")
    if seconds is not None:
        (d / "duration").write_text(seconds)
    if host is not None:
        (d / "host").write_text(host + "\n")


def test_load_history_reads_tree_and_fits_speeds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    c1 = out / "master" / "01_gabc123_first"
    c2 = out / "master" / "02_gdef456_second"
    # board1 built on fast (10 s) and slow (20 s): slow has speed 0.5.
    write_result(c1 / "board1", "10.0", "fast")
    write_result(c2 / "board1", "20.0", "slow")
    write_result(c1 / "board2", "40.5", "slow")      # 40.5 s on slow = 20.25 s on fast
    write_result(c1 / "board3", "7", None)            # local build, no host file
    write_result(c1 / "board4", None, "fast")         # buildman result: no duration
    write_result(c1 / "board5", "garbage", "fast")
    write_result(out / "current" / "board6", "3.5", "fast")
    write_result(out / "03_g0123abc_nosub" / "board7", "12", "fast")  # -N layout
    (out / "master" / "boards.cfg").write_text("x\n")
    (out / "master" / ".bm-work" / "01").mkdir(parents=True)

    samples = scan_history(out)
    assert sorted((s.target, s.host, s.seconds) for s in samples) == [
        ("board1", "fast", 10.0), ("board1", "slow", 20.0), ("board2", "slow", 40.5),
        ("board3", LOCAL, 7.0), ("board6", "fast", 3.5), ("board7", "fast", 12.0)]

    m = load_history(out, [Board("board1", "arm"), Board("board2", "arm"),
                           Board("board6", "riscv")])
    assert m.speed("fast") == pytest.approx(1.0)
    assert m.speed("slow") == pytest.approx(0.5)
    assert m.speed("never-seen") == 1.0
    assert m.estimate(Board("board1", "arm")) == pytest.approx(10.0)
    assert m.estimate(Board("board2", "arm")) == pytest.approx(20.25)
    assert m.estimate(Board("newarm", "arm")) == pytest.approx((10.0 + 20.25) / 2)
    assert m.estimate(Board("newrv", "riscv")) == pytest.approx(3.5)
    # Median of all boards: 3.5, 7 (local), 10, 12, 20.25.
    assert m.estimate(Board("newmips", "mips")) == pytest.approx(10.0)
    assert m.speed("") == pytest.approx(1.0)


def test_load_history_of_missing_tree_is_empty(tmp_path: Path) -> None:
    m = load_history(tmp_path / "nothing")
    assert m.empty
    assert m.estimate(Board("x", "arm")) == 1.0


# ---- the ETA of the live view ------------------------------------------------------------

def test_eta_is_the_policy_plan_carried_to_the_last_board() -> None:
    """Two executors, speeds 1 and 0.5: boards of 8, 6, 4 and 2 s planned longest first."""
    from buildfleet.fleet.dispatch.eta import expected_remaining

    policy = CostAwarePolicy(CostModel(board_seconds={"a": 8, "b": 6, "c": 4, "d": 2},
                                       host_speed={"fast": 1.0, "slow": 0.5}))
    policy.add_executor("fast", 1, anything, now=0.0)
    policy.add_executor("slow", 1, anything, now=0.0)
    policy.add_jobs([job(t) for t in "abcd"])
    # a (8) on fast ends at 8; b (6) on slow would end at 12, on fast at 14: slow;
    # c (4) on fast ends at 12; d (2) on fast ends at 14, on slow at 16: fast. Last: 14.
    assert expected_remaining(policy, 0.0) == pytest.approx(14.0)
    first = policy.take("fast", 0.0)
    assert first is not None and first.board.target == "a"
    assert expected_remaining(policy, 2.0) == pytest.approx(12.0)  # nothing changed but time
    # a took 16 s instead of its estimated 8: the rest is expected to take twice as long too
    assert policy.finished("fast", "a", 16.0)
    eta = expected_remaining(policy, 16.0)
    # at 16: b on fast (ends 22), c on slow (16 + 8 = 24), d on fast (24): 8 s, doubled
    assert eta is not None and eta == pytest.approx(2 * 8.0)


def test_eta_unknown_without_history_until_a_board_finished() -> None:
    from buildfleet.fleet.dispatch.eta import expected_remaining

    policy = CostAwarePolicy(CostModel())
    policy.add_executor("local", 2, anything, now=0.0)
    policy.add_jobs([job(t, commits=2) for t in "abc"])
    assert expected_remaining(policy, 0.0) is None
    for _ in range(2):
        assert policy.take("local", 0.0) is not None
    assert policy.finished("local", "a", 10.0)  # 10 s for an estimate of 2 (two commits)
    eta = expected_remaining(policy, 10.0)
    assert eta is not None and eta > 0


def test_a_failed_or_copied_result_never_makes_a_board_look_cheap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen on a real tree: sandbox failed after seconds (a host tool missing),
    the cache learnt it was cheap, and the next run, with the tool back,
    started it last and ran it alone in the tail. A failed build's time is a
    lower bound; a result the skip copied is no build at all."""
    from buildfleet.fleet.dispatch.costfile import CostData, load_cache, update_cache
    from buildfleet.results.history import scan_base

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tree = tmp_path / "tree"
    tree.mkdir()

    def run(name: str, results: dict[str, tuple[str, str]], copied: tuple[str, ...] = ()) -> None:
        base = tmp_path / name / "current"
        for target, (seconds, done) in results.items():
            write_result(base / target, seconds)
            (base / target / "done").write_text(done + "\n")
        for target in copied:
            write_result(base / target, "0.02")
            (base / target / "copied-from").write_text("abc123\n")
        assert update_cache(tree, CostData.from_samples(scan_base(base))) is None

    run("r1", {"sandbox": ("220.0", "0"), "qemu_arm": ("280.0", "0")})
    run("r2", {"sandbox": ("6.5", "2"), "qemu_arm": ("300.0", "0")}, copied=("am335x_evm",))
    cached, problem = load_cache(tree)
    assert problem is None
    assert cached.durations == {"sandbox": {LOCAL: 220.0}, "qemu_arm": {LOCAL: 300.0}}

    # A board that only ever failed is known by its longest failure, raised by a
    # longer one, replaced by its first good build.
    run("r3", {"zynq": ("40.0", "2")})
    run("r4", {"zynq": ("90.0", "1")})
    assert load_cache(tree)[0].durations["zynq"] == {LOCAL: 90.0}
    run("r5", {"zynq": ("60.0", "0")})
    assert load_cache(tree)[0].durations["zynq"] == {LOCAL: 60.0}


def test_a_failed_board_in_the_run_says_nothing_of_its_siblings() -> None:
    """The refit during a run: a board whose make failed after a few seconds
    must not make the unbuilt boards of its SoC look cheap (they would run
    last, alone); a failure that took longer than expected still counts."""
    from buildfleet.fleet.dispatch.refit import RunLearner

    boards = [Board("am1", "arm", "armv7", "am33xx"), Board("am2", "arm", "armv7", "am33xx"),
              Board("am3", "arm", "armv7", "am33xx")]
    costs = CostModel(board_seconds={"am1": 200.0}, boards={b.target: b for b in boards})
    costs.refit()
    learner = RunLearner(costs)
    before = costs.estimate(boards[2])
    learner.finished("local", boards[1], 1, 4.0, 1.0, failed=True)
    learner.refit([])
    assert costs.estimate(boards[1]) == pytest.approx(before)
    assert costs.estimate(boards[2]) == pytest.approx(before)
    learner.finished("local", boards[1], 1, 900.0, 1.0, failed=True)
    learner.refit([])
    assert costs.estimate(boards[1]) == pytest.approx(900.0)
    learner.finished("local", boards[0], 1, 4.0, 1.0)  # a good build: taken as it is
    assert costs.estimate(boards[0]) == pytest.approx(4.0)
