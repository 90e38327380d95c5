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
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import OutputError

# Temporary files are ".<stem>.<pid>.<random>.part<suffix>": the suffix stays last because writers such as
# OpenCV pick the format from it; the writer's process id tells a stale file (its process is gone) from one
# that another run writing into the same folder is still busy with.
TEMP_PATTERN = re.compile(r"^\..+?(?:\.(?P<pid>\d+))?\.[A-Za-z0-9_]{8}\.part(\.[A-Za-z0-9]+)*$")

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


def os_error_in(err: BaseException | None) -> OSError | None:
    """The OSError behind ``err``: itself, or one in its cause/context chain (torch and tifffile wrap them)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def is_fatal(err: BaseException) -> bool:
    """True when ``err`` (or its cause) means no later write can succeed either (disk full, read-only)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OutputError):
            return err.fatal
        if isinstance(err, OSError) and err.errno in FATAL_ERRNOS:
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(final: Path) -> Path:
    """A new, empty, hidden temporary file next to ``final`` (its folder created if missing)."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(final), suffix=f".part{final.suffix}",
                                        dir=final.parent)
        os.close(fd)
    except OSError as err:
        raise OutputError(final, describe_os_error(err), fatal=is_fatal(err)) from err
    return Path(tmp_name)


@contextlib.contextmanager
def scratch_beside(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary file next to ``path`` for an intermediate step of its writer (the streamed TIFF a
    COG is assembled from); it is removed on exit, whatever happens. Named as :func:`atomic_path`'s temporaries,
    so one left by a killed run is removed by :func:`remove_stale_temporaries`."""
    tmp = _temporary(Path(path))
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


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
    tmp = _temporary(final)
    try:
        try:
            yield tmp
        except OutputError:
            raise
        except Exception as err:
            cause = os_error_in(err)  # a failed write, however the writing library wraps it
            if cause is None:
                raise
            raise OutputError(final, describe_os_error(cause), fatal=is_fatal(cause)) from err
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


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: a process of another user has that id
        return True
    return True


def temp_prefix(final: Path) -> str:
    """The start of a temporary's name for ``final``: hidden, with the writing process's id."""
    return f".{final.stem}.{os.getpid()}."


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete unetseg's own temporary files (and OME-Zarr temporary folders) in ``folder`` whose writing process
    is gone (a killed run).

    Those of a live process (another run writing into the same folder on this machine) and anything else are
    left alone. Returns the paths removed.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = TEMP_PATTERN.match(entry.name)
        if match is None or entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
            continue
        if match["pid"] is not None and _process_alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry)
    return removed
