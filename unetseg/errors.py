"""User-facing errors: the CLI prints them as one line, without a traceback."""
from __future__ import annotations

import os


class UnetsegError(Exception):
    """Bad input from the user (a file, a config key, a value) or a failed output; the message names the culprit.

    Its own base class (not a ValueError), so a broad ``except ValueError`` around library code never
    swallows it and it never needs re-raising before one.
    """


class UnetsegWarning(UserWarning):
    """Advice about a choice the user made that works but costs (e.g. tiles too small for their context); the CLI
    prints it as one line."""


class OutputError(UnetsegError, OSError):
    """An output file could not be written; ``fatal`` when no later write can succeed either (disk full).

    Also an OSError, so code that guards a write with ``except OSError`` still catches it.
    """

    def __init__(self, path: str | os.PathLike, cause: str, *, fatal: bool = False) -> None:
        Exception.__init__(self, f"cannot write {os.fspath(path)}: {cause}")
        self.path = os.fspath(path)
        self.cause = cause
        self.fatal = fatal
