"""The measured choice of engine="auto" / tile_size="auto", remembered between processes.

Choosing by measurement times each usable engine at several tile sizes: 10-20 s on a 2-core CPU, more than the
work of a short ``unetseg predict``. What it measures depends only on the model's architecture, the image's
shape and dtype, what the forward stage computes, the batch, the precision, the device, the machine (CPU model and
flags, threads; the GPU's name) and the versions of unetseg and the engines, so the choice is kept in a small JSON
file under a key made of all of them and reused by later processes on the same machine, as cuDNN, Triton and
OpenVINO keep their tuned kernels. Nothing else is taken from the file: weights, normalisation and the image's
values never change a choice, and a reused tile is checked against the memory free now.

The file is ``$UNETSEG_TUNING_CACHE`` when set (``off`` keeps nothing: every process measures), else
``$XDG_CACHE_HOME/unetseg/tuning.json`` (``~/.cache/unetseg/tuning.json``). A file that cannot be read, parsed or
written is ignored (the choice is measured as if it were absent): a cache never fails a prediction.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..engines.contract import ForwardSpec
from ..models.precision import cpu_flags, cpu_model

ENV = "UNETSEG_TUNING_CACHE"
OFF = ("off", "0", "false", "no", "")
MAX_ENTRIES = 256  # the least recently used go first; an entry is ~200 bytes
# a choice is kept for this long: a machine's load, drivers and kernels change under unchanged version numbers
MAX_AGE_SECONDS = 30 * 24 * 3600
ENGINE_PACKAGES = ("torch", "openvino", "onnxruntime")


@dataclass(frozen=True)
class Choice:
    """What engine="auto" / tile_size="auto" resolved to for one image: the engine, the tile side (px), the
    estimated seconds of the whole image on them (None when nothing was timed), the bytes one batch of such tiles
    needs for its activations (0 when unknown), whether it came from the cache file and whether the engine was
    compared with the others (False: engine="auto" stayed on torch, the work too small to repay converting)."""

    engine: str
    tile: int
    seconds: float | None = None
    batch_bytes: float = 0.0
    cached: bool = False
    compared: bool = True


def cache_file() -> Path | None:
    """The cache file, or None when ``$UNETSEG_TUNING_CACHE`` is ``off``."""
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in OFF else Path(value).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "unetseg" / "tuning.json"


@functools.cache
def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in ("unetseg", *ENGINE_PACKAGES):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def machine(device: torch.device) -> dict[str, Any]:
    """What makes timings on ``device`` differ between machines: the CPU (model, flags, cores, torch's threads)
    and, on a GPU, its name."""
    facts: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "model": cpu_model(),
                             "flags": hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16],
                             "capability": str(torch.backends.cpu.get_cpu_capability()),
                             "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def spec_facts(spec: ForwardSpec) -> dict[str, Any]:
    """The parts of ``spec`` that change what the forward stage computes, not its values: a per-image z-score's
    mean or a CT window's bounds do not change its speed."""
    return {"dtype": str(spec.dtype), "channels": spec.channels, "labels": spec.labels, "tta": spec.tta,
            "spread": spec.spread, "entropy_channel": spec.entropy_channel, "dims": spec.dims,
            "clip": spec.low is not None, "invalid": None if spec.invalid is None else spec.invalid.rule}


def choice_key(request: dict[str, Any], device: torch.device) -> str:
    """The key of one choice: ``request`` (what was asked and of what) with the machine and the versions."""
    whole = {"request": request, "machine": machine(device), "versions": _versions()}
    return hashlib.sha256(json.dumps(whole, sort_keys=True, default=str).encode()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def recall(key: str) -> Choice | None:
    """The choice stored under ``key`` (younger than :data:`MAX_AGE_SECONDS`), or None."""
    path = cache_file()
    if path is None:
        return None
    entry = _read(path).get(key)
    if not isinstance(entry, dict):
        return None
    try:
        if time.time() - float(entry["saved"]) > MAX_AGE_SECONDS:
            return None
        return Choice(str(entry["engine"]), int(entry["tile"]),
                      None if entry["seconds"] is None else float(entry["seconds"]), float(entry["batch_bytes"]),
                      cached=True,
                      # written before the flag: a torch choice may have stayed on torch uncompared
                      compared=bool(entry.get("compared", entry["engine"] != "torch")))
    except (TypeError, KeyError, ValueError):
        return None


def remember(key: str, choice: Choice) -> None:
    """Store ``choice`` under ``key``: the file is read, updated and replaced in one rename (a concurrent writer
    may win, losing one entry, never the file); the least recently saved entries beyond :data:`MAX_ENTRIES`
    are dropped."""
    path = cache_file()
    if path is None:
        return
    entries = _read(path)
    entries[key] = {"engine": choice.engine, "tile": choice.tile, "seconds": choice.seconds,
                    "batch_bytes": choice.batch_bytes, "compared": choice.compared, "saved": time.time()}
    if len(entries) > MAX_ENTRIES:
        kept = sorted(entries, key=lambda k: float(entries[k].get("saved", 0)) if isinstance(entries[k], dict)
                      else 0.0)[-MAX_ENTRIES:]
        entries = {k: entries[k] for k in kept}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".part",
                                         delete=False, encoding="utf-8") as f:
            tmp = f.name
            json.dump(entries, f)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
