"""Per-input manifests: ``<stem>.done.json``, written atomically once every output of an input is complete.

A re-run (a preempted cluster job, a sharded batch started again) skips an input whose manifest names the
same input file (path, size, modification time), the same requested formats, and outputs that all exist.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .maps import write_json


def manifest_path(stem: Path) -> Path:
    return Path(f"{stem}.done.json")


def _input_state(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"input": os.fspath(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def write_manifest(stem: Path, path: Path, formats: list[str], outputs: list[Path]) -> Path:
    """Record that ``path``'s outputs ``outputs`` (for ``formats``) are complete."""
    return write_json(manifest_path(stem), {**_input_state(path), "formats": sorted(formats),
                                            "outputs": [os.fspath(o) for o in outputs]})


def is_done(stem: Path, path: Path, formats: list[str]) -> bool:
    """True when a manifest says ``path`` was already segmented into ``formats`` and those outputs still exist."""
    try:
        data = json.loads(manifest_path(stem).read_text())
        state = _input_state(path)
    except (OSError, ValueError):
        return False
    same = all(data.get(k) == v for k, v in state.items()) and data.get("formats") == sorted(formats)
    return same and all(Path(o).exists() for o in data.get("outputs", []))
