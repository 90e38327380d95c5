"""Argument converters and output helpers shared by the subcommands."""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from tqdm.auto import tqdm

from ..errors import UnetsegError

_IMPORTED = time.perf_counter()


def process_started() -> float:
    """The ``time.perf_counter()`` of this process's start, so a command's time budget (``--minutes``) counts the
    interpreter's start and the imports too: from /proc on Linux, else when this module was imported."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, after the command name
            age = float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED
    return time.perf_counter() - max(0.0, age) if 0.0 <= age < 3600 else _IMPORTED


def torch_device(text: str) -> torch.device:
    """``--device``: a torch device that exists on this machine."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UnetsegError(f"--device {text!r}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnetsegError(f"--device {text}: CUDA is not available on this machine")
    return device


def comma_list(flag: str, text: str, choices: tuple[str, ...]) -> list[str]:
    """``--format a,b``: the listed items, each one of ``choices``."""
    items = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in items if f not in choices]
    if bad or not items:
        raise UnetsegError(f"{flag} {text!r}: choose from {','.join(choices)}")
    return items


def nodata_value(text: str) -> str | float | None:
    """``--nodata``: "auto", "none" (only NaN/Inf invalid) or a number."""
    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise UnetsegError(f"--nodata {text!r}: must be a number, 'auto' or 'none'") from None


def background_class(text: str) -> int | None:
    """``--background``: a class id, or "none"."""
    if text.lower() == "none":
        return None
    if not text.isdigit():
        raise UnetsegError(f"--background {text!r}: must be a class id (0, 1, ...) or 'none'")
    return int(text)


def band_list(text: str | None) -> list[int] | None:
    """``--bands R,G,B`` or ``--bands B``: 0-based band numbers (1 or 3 of them)."""
    if text is None:
        return None
    try:
        bands = [int(b) for b in text.split(",")]
    except ValueError:
        bands = []
    if len(bands) not in (1, 3) or any(b < 0 for b in bands):
        raise UnetsegError(f"--bands {text!r}: give three band numbers R,G,B or one, counted from 0")
    return bands


def first_line(err: BaseException) -> str:
    """An exception as one line: its message, or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def error_line(command: str, message: str) -> None:
    """Print ``unetseg COMMAND: error: MESSAGE`` to stderr (through tqdm, so progress bars stay intact)."""
    tqdm.write(f"unetseg {command}: error: {message}", file=sys.stderr)


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    """``--engine``: what runs the model (:mod:`unetseg.engines.registry`)."""
    from ..engines.registry import engine_choices
    from ..tiling.options import DEFAULTS

    parser.add_argument("--engine", choices=engine_choices(), default=DEFAULTS.engine,
                        help="what runs the model: auto = the installed engine measured fastest on this model and "
                             "tile size (once per process), torch, openvino (CPUs; int8 with --amp int8) or "
                             f"onnxruntime (fp32) (default: {DEFAULTS.engine})")
