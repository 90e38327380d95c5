"""Atomic, verified file writes: a final name only ever holds a complete file that was checked.

Every writer in :mod:`unetseg.io` (and checkpoints) writes through :func:`atomic_path`: the data goes to a
hidden temporary file next to the target, is checked (non-empty, and the format's own check when the
writer gives one), flushed to disk, given the permissions the umask allows, and only then renamed onto
the final name. Any failure removes the temporary file and raises one :class:`OutputError` naming the
output and the cause (``No space left on device`` included).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import OutputError

# Temporary files are ".<stem>.<random>.part<suffix>": the suffix stays last because writers such as
# OpenCV pick the format from it.
TEMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.part(\.[A-Za-z0-9]+)*$")

# errno values after which every later write to the same place fails too: stop a batch instead of
# reporting each remaining input.
FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_os_error(err: BaseException) -> str:
    """The cause of a failed write in a few words (``No space left on device``)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).splitlines()[0] if str(err) else ""
    return text or type(err).__name__


def is_fatal(err: BaseException) -> bool:
    """True when ``err`` (or its cause) means no later write can succeed either (disk full, read-only)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in FATAL_ERRNOS:
            return True
        if isinstance(err, OutputError):
            return err.fatal
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, check it and rename it onto ``path``.

    Args:
        path: the final file. Its folder is created if missing.
        verify: optional check of the written temporary file (e.g. read the format's header back); it raises
            on a bad file. Every file must also be non-empty.

    Raises:
        OutputError: one line naming ``path`` and the cause, when writing, checking or renaming fails. The
            temporary file is removed and an existing file at ``path`` is left as it was.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent)
        os.close(fd)
    except OSError as err:
        raise OutputError(final, describe_os_error(err), fatal=is_fatal(err)) from err
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except OutputError:
            raise
        except OSError as err:
            raise OutputError(final, describe_os_error(err), fatal=is_fatal(err)) from err
        try:
            size = tmp.stat().st_size
            if size == 0:
                raise OutputError(final, "nothing was written (0 bytes)")
            if verify is not None:
                verify(tmp)
            _fsync(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished output follows the umask
            os.replace(tmp, final)
        except OutputError:
            raise
        except Exception as err:  # noqa: BLE001  a failed check of any kind is a bad output
            raise OutputError(final, describe_os_error(err), fatal=is_fatal(err)) from err
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete unetseg's own temporary files (left by a killed run) in ``folder``; returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.is_file() and TEMP_PATTERN.match(entry.name):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed
