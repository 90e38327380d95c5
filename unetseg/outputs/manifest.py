"""Per-input manifests: ``<stem>.done.json``, written atomically once every output of an input is complete.

A re-run (a preempted cluster job, a sharded batch started again) skips an input whose manifest names the
same input file and checkpoint (path, size, modification time), the same run settings (formats, tiling,
precision, ...), and outputs that all still exist. Anything else is done again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..io.maps import write_json

# the formats a one-process run writes chunk by chunk (slab by slab) with a journal: a killed run resumes where it
# stopped (OME-Zarr labels; the summary's counts come from the journal)
RESUMABLE_FORMATS = frozenset({"ome-zarr", "summary"})


def resumable(formats: list[str]) -> bool:
    """Whether a run writing ``formats`` resumes where a killed one stopped: OME-Zarr labels and at most a
    summary beside them."""
    return "ome-zarr" in formats and set(formats) <= RESUMABLE_FORMATS


def run_identity(path: str | os.PathLike, formats: list[str], options: Any, model: Any,
                 **extra: Any) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (JSON-able): the input file's version, the formats,
    every tiling option (a dataclass's fields, by repr), the model's weights (their digest) and ``extra``."""
    from dataclasses import fields

    from ..models.checkpoint import state_digest

    return {"input": file_state(path), **extra, "formats": sorted(formats),
            "options": {f.name: repr(getattr(options, f.name)) for f in fields(options)},
            "model": state_digest(model)}


def manifest_path(stem: Path) -> Path:
    return Path(f"{stem}.done.json")


def file_state(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a file's version: resolved path, size, modification time (ns)."""
    stat = os.stat(path)
    return {"path": os.fspath(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _key(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({"input": file_state(path), **settings}, default=str))  # as it reads back


def write_manifest(stem: Path, path: Path, settings: dict[str, Any], outputs: list[Path]) -> Path:
    """Record that input ``path``, run with ``settings`` (JSON-able), has its outputs ``outputs`` complete."""
    return write_json(manifest_path(stem), {**_key(path, settings), "outputs": [os.fspath(o) for o in outputs]})


def is_done(stem: Path, path: Path, settings: dict[str, Any]) -> bool:
    """True when the manifest of ``stem`` records ``path`` as it is now, run with ``settings``, outputs present."""
    try:
        data = json.loads(manifest_path(stem).read_text())
        key = _key(path, settings)
    except (OSError, ValueError):
        return False
    outputs = data.pop("outputs", None)
    return data == key and isinstance(outputs, list) and all(Path(o).exists() for o in outputs)
