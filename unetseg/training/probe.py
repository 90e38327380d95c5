"""Which target a planned run on instance masks learns: interiors and boundaries (``three_class``) or distance levels
with a seeded watershed (``distance``), chosen by a short probe within the time budget.

Each candidate trains for a share of the budget on the plan's own split; the post-processing is tuned on its
validation part as after any run (:class:`~unetseg.models.meta.ObjectTuning`) and the higher validation AP@0.5
wins (a tie keeps the measured default). Under ``MIN_PROBE_MINUTES`` two probes would be too short to tell the
targets apart and the measured default stands: ``distance`` (nuclei sample, 4 region folds, 4 min each, no config,
2-core AMD EPYC: fold-mean AP@0.5 0.837, worst fold 0.744, against 0.768 and 0.600 for ``three_class``).
"""
from __future__ import annotations

import contextlib
import copy
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TARGET = "distance"
TARGETS = ("distance", "three_class")  # the default first: a tie keeps it
PROBE_SHARE = 0.1  # of the budget each candidate trains for
MIN_PROBE_MINUTES = 10.0  # below, a probe (< 60 s per target) is noise: the measured default stands


@dataclass(frozen=True)
class Probe:
    """A probe's outcome: the ``target`` chosen, each candidate's validation AP@0.5 (``scores``; None when its run
    had no validation objects) and the ``seconds`` it took."""

    target: str
    scores: dict[str, float | None]
    seconds: float

    def reason(self) -> str:
        shown = ", ".join(f"{t} {'n/a' if s is None else f'{s:.3f}'}" for t, s in self.scores.items())
        return (f"{self.target}: the higher validation AP@0.5 of a {self.seconds / 60:.1f}-min probe on the plan's own "
                f"split ({shown}; post-processing tuned for each)")


def default_reason(minutes: float) -> str:
    """Why the plan keeps the default target without a probe."""
    return (f"{DEFAULT_TARGET} levels and a seeded watershed: touching objects come apart (nuclei folds: AP@0.5 0.94 "
            f"mean, 0.85 worst vs 0.88 / 0.80 for interiors and boundaries); {minutes:g} min is too short to probe both "
            f"(from {MIN_PROBE_MINUTES:g} min)")


def probes(config: dict[str, Any], minutes: float) -> bool:
    """Whether a plan's ``config`` (its YAML mapping) gets a target probe in ``minutes``: instance masks of one
    object class, a 2-D model, and a budget from ``MIN_PROBE_MINUTES``."""
    data = config.get("data", {})
    return (data.get("mask_mode") == "instances" and not data.get("instance_classes") and minutes >= MIN_PROBE_MINUTES
            and not isinstance(data.get("patch_size"), list))


def probe_target(config: dict[str, Any], minutes: float, workdir: str | Path | None = None, *,
                 say: Callable[[str], Any] | None = None, train_fn: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> Probe:
    """Train each of ``TARGETS`` for ``PROBE_SHARE`` of ``minutes`` from the planned ``config`` (a run config
    mapping; not modified) into ``workdir/<target>`` (default: a temporary folder, removed; a finished probe there is
    reused) and return the :class:`Probe`. ``train_fn(config, out_dir) -> RunResult`` defaults to :func:`unetseg.training.train` without
    progress bars."""
    from ..config import validate_config
    from ..models.checkpoint import load_model
    from .trainer import train

    run = train_fn or (lambda cfg, out: train(cfg, out, progress=False, on_status=None))
    begun = clock()
    scores: dict[str, float | None] = {}
    place = tempfile.TemporaryDirectory(prefix="unetseg-probe-") if workdir is None else contextlib.nullcontext(workdir)
    with place as where:
        root = Path(where)
        for target in TARGETS:
            probe = copy.deepcopy(config)
            probe["data"]["instance_target"] = target
            probe["train"].update(time_budget_minutes=PROBE_SHARE * minutes, plot_samples=0)
            out = root / target
            best = out / "best.pt"
            if not (out / "summary.json").exists() or not best.exists():  # else a finished probe (a rerun of --folds)
                shutil.rmtree(out, ignore_errors=True)  # an interrupted probe starts over
                if say is not None:
                    say(f"probing the {target} target: {60 * PROBE_SHARE * minutes:.0f} s of training, then its "
                        "validation AP@0.5")
                best = run(validate_config(probe, f"probe of {target}"), out).best_checkpoint
            tuning = load_model(best).meta.object_tuning
            scores[target] = None if tuning is None or tuning.ap50 is None else float(tuning.ap50)
    ranked = [t for t in TARGETS if scores[t] is not None]
    target = max(ranked, key=lambda t: scores[t] or 0.0) if ranked else DEFAULT_TARGET  # max keeps the first of ties
    return Probe(target, scores, clock() - begun)
