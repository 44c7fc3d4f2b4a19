"""The local machine as an executor: N slots pulling board jobs from the pool.

Each slot is a thread driving the shared builder in its own worktree. A slot
that crashes counts as a thread exception (exit 102) and its board goes back
to the pool for another executor; it is never silently lost.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

from buildfleet.build.builder import Builder, BuildInterrupted, Slot
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.fleet.dispatch.sink import ResultSink

LOCAL = "local"


class LocalExecutor:
    name = LOCAL

    def __init__(self, pool: JobPool, builder: Builder, slots: list[Slot], sink: ResultSink,
                 make_jobs: Callable[[int], int], stop: threading.Event,
                 log: Callable[[str], None], debug: bool = False) -> None:
        self.pool = pool
        self.builder = builder
        self.slots = slots
        self.sink = sink
        self.make_jobs = make_jobs
        self.stop = stop
        self.log = log
        self.debug = debug
        self.exceptions = 0
        self._active = 0
        self._lock = threading.Lock()
        self._job_stops: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []

    def active(self) -> int:
        with self._lock:
            return self._active

    def cancel(self, target: str) -> None:
        """Another executor finished ``target`` first: stop our copy."""
        with self._lock:
            event = self._job_stops.get(target)
        if event is not None:
            event.set()

    def _watch_stop(self) -> None:
        self.stop.wait()
        with self._lock:
            events = list(self._job_stops.values())
        for event in events:
            event.set()

    def start(self) -> None:
        threading.Thread(target=self._watch_stop, daemon=True, name="local-stop").start()
        for slot in self.slots:
            t = threading.Thread(target=self._run_slot, args=(slot,), daemon=True,
                                 name=f"slot-{slot.index:02d}")
            t.start()
            self._threads.append(t)

    def join(self, timeout: float | None = None) -> bool:
        for t in self._threads:
            t.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    def _run_slot(self, slot: Slot) -> None:
        while not self.stop.is_set():
            job = self.pool.take(LOCAL)
            if job is None:
                return
            target = job.board.target
            job_stop = threading.Event()
            with self._lock:
                self._active += 1
                self._job_stops[target] = job_stop
            if self.stop.is_set():
                job_stop.set()
            try:
                self.builder.build(job, slot, lambda: self.make_jobs(self.active()),
                                   lambda r: self.sink.accept(LOCAL, r), job_stop)
                self.pool.finished(LOCAL, target)
            except BuildInterrupted:
                if self.stop.is_set():
                    self.pool.failed(LOCAL, target, "interrupted")
                    return
                # cancelled: another executor's copy of this board won
            except Exception as exc:  # noqa: BLE001 - a slot must survive any board
                with self._lock:
                    self.exceptions += 1
                self.log(f"Thread exception (board {target}): {exc}")
                if self.debug:
                    self.log(traceback.format_exc())
                self.pool.failed(LOCAL, target, f"exception: {exc}")
            finally:
                with self._lock:
                    self._active -= 1
                    self._job_stops.pop(target, None)
