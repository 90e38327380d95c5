"""The files of a run folder besides checkpoints: config.yaml, split.json, summary.json, curves.png, samples.png."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import RunConfig, config_to_yaml
from ..io.maps import write_json, write_text


def write_config(run_dir: Path, resolved: RunConfig) -> Path:
    """The resolved config (in_channels / num_classes filled in): ``unetseg train RUN/config.yaml`` reruns it."""
    return write_text(run_dir / "config.yaml", config_to_yaml(resolved))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """summary.json: the outcome of the run (paths as strings)."""
    plain = json.loads(json.dumps(summary, default=str))
    return write_json(run_dir / "summary.json", plain)


def write_split(run_dir: Path, record: dict[str, Any]) -> Path:
    """split.json: which files (and, for a region split, which blocks) went to training and to validation."""
    return write_json(run_dir / "split.json", json.loads(json.dumps(record, default=str)))
