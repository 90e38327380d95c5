"""``unetseg`` command line: builds the parser from :mod:`unetseg.commands` and dispatches; nothing else.

Each subcommand module gives ``add_parser(subparsers)`` and ``run(args) -> exit code``. A UnetsegError (bad
input from the user) is printed as one line without a traceback and exits with code 2; any other error is one
line too (exit code 1), with the traceback only under ``UNETSEG_DEBUG=1``.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

from ._version import __version__
from .commands import demo, evaluate, export, plan, predict, train
from .commands.common import error_line, first_line, process_started
from .engines.allocator import keep_freed_memory
from .errors import UnetsegError, UnetsegWarning

COMMANDS = {"demo": demo, "plan": plan, "train": train, "predict": predict, "evaluate": evaluate, "export": export}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetseg",
        description="U-Net semantic segmentation: train on your images, segment images of any size without seams.",
    )
    parser.add_argument("--version", action="version", version=f"unetseg {__version__}",
                        help="print unetseg's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # a time budget (--minutes) counts from the process's start when this is the process's command
    started = process_started() if argv is None else time.perf_counter()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a bad argument that argparse already reported in one line
        return int(done.code or 0) if not isinstance(done.code, str) else 2
    args.started = started
    keep_freed_memory()  # a command's process is ours: every forward pass reuses memory instead of faulting it in
    try:
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_warning_line, args.command)
            return int(COMMANDS[args.command].run(args) or 0)
    except UnetsegError as err:
        error_line(args.command, str(err))
        return 2
    except KeyboardInterrupt:
        print(f"unetseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  a bug or an environment fault: one line, traceback on request
        if os.environ.get("UNETSEG_DEBUG"):
            raise
        error_line(args.command, f"{type(err).__name__}: {first_line(err)} (internal error; rerun with "
                                 "UNETSEG_DEBUG=1 for the traceback)")
        return 1


def _warning_line(command: str, message: Warning, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A warning during a command: one line on stderr (our advice by itself, others with their category)."""
    kind = "" if issubclass(category, UnetsegWarning) else f"{category.__name__}: "
    print(f"unetseg {command}: warning: {kind}{first_line(message)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
