"""Where every executor's results go: one sink for local slots and workers.

It accepts a result only from the executor that currently owns the board (a
worker that was given up on may still send late results: those are dropped),
writes it once through the output-tree writer, and counts it. A copy that is
not written (a duplicate, a hedged copy that lost, a late one) is first
compared with the written one's image hashes: the reproducibility check.

Checking and claiming a result is synchronous (an executor learns at once
that a result is unsafe or a duplicate); writing its files is done by the
sink's own thread, so a build slot starts its next commit instead of waiting
for a dozen file creations. ``close`` waits until every accepted result is on
disk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.model import CAPTURE_PROBLEMS, COPIED_FROM, IMAGE_HASHES, BuildResult
from buildfleet.results.progress import Progress, RunCounts
from buildfleet.results.reproducibility import ReproCheck
from buildfleet.results.writer import ResultWriter, UnsafeResult

# Result directories are independent, and creating files is kernel work that
# several threads spread over the CPUs (one thread absorbed ~900 results/s on
# a VM disk, where a result is a dozen file creations; four did better).
WRITER_THREADS = 4


class ResultSink:
    """Where every executor's results go: owner check, written once, counted.

    ``accept(executor, result)`` is True when the result will be written
    (by the sink's own ``WRITER_THREADS`` threads; ``flush``/``close`` wait
    for them), False when it is late or a duplicate (then only compared with
    the written one, for the reproducibility check); it raises
    ``UnsafeResult`` for names that would leave the output tree, and the
    caller gives up the executor that sent it. ``discarded`` counts the
    results not written; ``counts`` and ``progress`` see each written one.
    """

    def __init__(self, pool: JobPool, writer: ResultWriter, counts: RunCounts,
                 progress: Progress, on_written: Callable[[BuildResult], None] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.pool = pool
        self.writer = writer
        self.counts = counts
        self.progress = progress
        self.on_written = on_written
        self.log = log or progress.message
        self.discarded = 0
        self.repro = ReproCheck()
        self._lock = threading.Lock()
        self._queue: queue.Queue[BuildResult | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._drain, daemon=True,
                                          name=f"result-writer-{i}")
                         for i in range(WRITER_THREADS)]
        for thread in self._threads:
            thread.start()
        self._closed = False

    def check(self, result: BuildResult) -> None:
        """Compare a copy that will not be written with the written one, if any."""
        other = result.files.get(IMAGE_HASHES)
        if other is None or COPIED_FROM in result.files:
            # A copy of another commit's build: its images carry that commit's
            # build (a version string may name the commit), not a rebuild of this one.
            return
        written = self.writer.written_hashes(result.target, result.sequence)
        if written is None:
            return
        self.repro.compare(result.target, result.sequence, written[0], written[1],
                           other, result.host, hedged=self.pool.was_hedged(result.target))

    def accept(self, executor: str, result: BuildResult) -> bool:
        """Take one result from ``executor``; False if it was late or a duplicate.

        Raises UnsafeResult (nothing written) for a board or file name that
        would leave the output tree: the executor that sent it is not trusted.
        """
        if not self.pool.owns(executor, result.target):
            self.check(result)  # compared, never written
            with self._lock:
                self.discarded += 1
            return False
        try:
            fresh = self.writer.reserve(result)
        except UnsafeResult:
            # Never written: the caller gives up on whoever sent it.
            with self._lock:
                self.discarded += 1
            raise
        if not fresh:
            self.check(result)
            with self._lock:
                self.discarded += 1
            return False
        self._queue.put(result)
        return True

    def _drain(self) -> None:
        while True:
            result = self._queue.get()
            try:
                if result is None:
                    return
                self._commit(result)
            finally:
                self._queue.task_done()

    def _commit(self, result: BuildResult) -> None:
        try:
            self.writer.commit(result)
        except OSError as exc:
            self.log(f"Cannot write result of {result.target}: {exc}")
            return
        with self._lock:
            self.counts.add(result.return_code, bool(result.stderr), result.host)
            if COPIED_FROM in result.files:
                self.counts.skipped += 1
        self.progress.update(result.target, result.host)
        problems = result.files.get(CAPTURE_PROBLEMS)
        if problems:  # kept in the result too (capture.err)
            for line in problems.decode("utf-8", "replace").splitlines():
                self.log(f"Warning: {result.target}: {line}")
        if self.on_written is not None:
            self.on_written(result)

    def flush(self) -> None:
        """Wait until every accepted result is written."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued and stop the writer thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
