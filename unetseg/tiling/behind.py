"""Writing behind: finished bands go to their destination in a background thread, so the device never waits for
a file's encoding (zlib, PNG) or a slow disk. The queue is short (its items are whole bands), an error in the
writer is raised in the caller at its next hand-over or at the end, and leaving early (an error, a Cancel)
stops the thread without writing what is left."""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_END = object()


class WriteBehind:
    """``put(item)`` hands ``item`` to ``write`` in a background thread, at most ``depth`` items behind.

    Use as a context manager: leaving it normally waits until every item is written (and raises the writer's
    error, if any); leaving it by an exception drops what is queued and stops the thread."""

    def __init__(self, write: Callable[[Any], None], depth: int = 2, name: str = "unetseg-band-writer") -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> WriteBehind:
        self._thread.start()
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is None:
            self.close()
        else:
            self._abandon()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END or self._stop.is_set():
                return
            try:
                self._write(item)
            except BaseException as err:  # raised in the caller at its next put() or at close()
                self._error = err
                self._stop.set()
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, item: Any) -> None:
        """Queue ``item`` (waiting while ``depth`` items are queued); raises the writer's error if it failed."""
        while True:
            self._raise()
            if self._stop.is_set():
                raise RuntimeError("the band writer has stopped")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait until everything queued is written; raise the writer's error, if any."""
        while self._thread.is_alive():
            try:
                self._queue.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._raise()

    def _abandon(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(_END)
        self._thread.join(timeout=30)
