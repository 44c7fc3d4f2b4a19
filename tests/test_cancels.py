"""The per-board cancel state shared by the slot runner and the boss's side of a worker."""

from __future__ import annotations

from buildfleet.build.cancels import BoardStops


def test_cancel_stops_only_a_begun_board_unless_remembered() -> None:
    stops = BoardStops()
    assert not stops.cancel("a")  # not building: nothing to stop
    event = stops.begin("a")
    assert stops.active() == 1 and not event.is_set()
    assert stops.cancel("a") and event.is_set() and stops.cancelled("a")
    stops.end("a")
    assert stops.active() == 0 and not stops.cancelled("a")
    assert stops.cancel("b", remember=True)  # a copy the worker may not have started
    assert stops.cancelled("b") and stops.cancelled_targets() == {"b"}


def test_stop_all_reaches_running_and_later_boards() -> None:
    stops = BoardStops()
    running = stops.begin("a")
    stops.stop_all()
    assert running.is_set() and stops.stopping
    assert stops.begin("late").is_set()  # a board begun after the stop stops at once
