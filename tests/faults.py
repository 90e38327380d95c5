"""Fault injection for the fault tests: a full disk without root, and the CLI's stderr read as lines."""
from __future__ import annotations

import os
import tempfile

import pytest

DEV_FULL = "/dev/full"

needs_dev_full = pytest.mark.skipif(not os.path.exists(DEV_FULL), reason="needs /dev/full (Linux)")


def fill_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every temporary file of :func:`unetseg.io.atomic.atomic_path` is a link to /dev/full.

    Whatever writes into it (a Python file, OpenCV, tifffile, torch's zip writer) gets the kernel's own
    ``ENOSPC`` (No space left on device), exactly as on a full disk, without root or a tiny file system.
    """
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        os.symlink(DEV_FULL, name)
        return os.open(name, os.O_WRONLY), name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def cli_lines(capsys: pytest.CaptureFixture) -> list[str]:
    """The messages unetseg printed to stderr (progress-bar redraws left out); asserts there is no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line[line.index("unetseg "):].strip() for line in err.splitlines() if "unetseg " in line]
