"""Timestamped log files of a run: the boss's ``.buildman.log`` and ``worker-<name>.log``.

Written as things happen (line-buffered, thread-safe), so after a crash or a
lost machine the log still says what happened up to that moment.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import IO


class RunLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = path.open("w", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()

    def write(self, direction: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            if not self._fh.closed:
                self._fh.write(f"{stamp} {direction} {text}\n")
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()
