"""Per-board cancel state of one executor: a stop event per board, and a run-wide stop.

Why one class: the slot runner (local slots and each worker) and the boss's
side of a worker (``fleet.remote.session``) both keep "which boards were
cancelled" under a lock, and both must answer the same questions: is this
board's copy cancelled (its results no longer count), stop every board (the
run ends). Thread-safe; targets are board names.
"""

from __future__ import annotations

import threading


class BoardStops:
    """A ``threading.Event`` per board target, set when that board is to stop.

    ``begin(target)`` gives a board starting now its event (already set if
    the executor is stopping); ``end`` forgets it. ``cancel(target)`` sets it;
    with ``remember`` a board that has no event yet is marked too, so a later
    ``cancelled(target)`` is True (the boss cancels copies a worker may not
    have started). ``stop_all`` sets every event and every later one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._stopping = False

    @property
    def stopping(self) -> bool:
        with self._lock:
            return self._stopping

    def begin(self, target: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events[target] = event
            if self._stopping:
                event.set()
        return event

    def end(self, target: str) -> None:
        with self._lock:
            self._events.pop(target, None)

    def cancel(self, target: str, remember: bool = False) -> bool:
        """Stop ``target``; False if it has no event and ``remember`` is False."""
        with self._lock:
            event = self._events.get(target)
            if event is None:
                if not remember:
                    return False
                event = self._events[target] = threading.Event()
        event.set()
        return True

    def cancelled(self, target: str) -> bool:
        with self._lock:
            event = self._events.get(target)
        return event is not None and event.is_set()

    def cancelled_targets(self) -> set[str]:
        with self._lock:
            return {t for t, e in self._events.items() if e.is_set()}

    def active(self) -> int:
        """Boards begun and not ended (cancelled ones included until they end)."""
        with self._lock:
            return len(self._events)

    def stop_all(self) -> None:
        with self._lock:
            self._stopping = True
            events = list(self._events.values())
        for event in events:
            event.set()
