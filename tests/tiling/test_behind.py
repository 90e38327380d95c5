"""Writing behind: every band written in order, the writer's error raised in the caller, leaving early drops the
queue and ends the thread."""
import threading
import time

import pytest

from unetseg.tiling.behind import WriteBehind


def test_items_are_written_in_order_before_close_returns():
    written = []

    def slow(item):
        time.sleep(0.01)
        written.append(item)

    with WriteBehind(slow) as writer:
        for i in range(10):
            writer.put(i)
    assert written == list(range(10))


def test_the_writers_error_is_raised_at_the_next_put_or_at_close():
    def fail(item):
        if item == 2:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        with WriteBehind(fail) as writer:
            for i in range(100):
                writer.put(i)
                time.sleep(0.002)
    with pytest.raises(OSError, match="No space left"):
        with WriteBehind(fail) as writer:
            for i in range(3):
                writer.put(i)


def test_leaving_by_an_exception_drops_the_queue_and_ends_the_thread():
    started, written = threading.Event(), []

    def blocked(item):
        started.wait(5)
        written.append(item)

    with pytest.raises(KeyboardInterrupt):
        with WriteBehind(blocked, depth=2) as writer:
            writer.put(0)
            writer.put(1)
            started.set()
            raise KeyboardInterrupt
    assert written in ([0], [0, 1], [])
    assert not [t for t in threading.enumerate() if t.name == "unetseg-band-writer"]
