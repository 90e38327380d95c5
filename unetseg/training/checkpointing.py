"""Run checkpoints: best.pt / last.pt with everything needed to use them or to resume exactly.

Both files are ordinary unetseg checkpoints (``unetseg.load_model`` gives a ready model: weights,
normalisation, class names and colours). ``last.pt`` also holds a ``"training"`` dict (optimizer,
scheduler, grad scaler, position, best score, elapsed time, RNG states) made of tensors and plain
Python values only, so ``torch.load(weights_only=True)`` reads it.
"""
from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UnetsegError
from ..models.checkpoint import checkpoint_payload, load_weights, read_checkpoint, write_checkpoint

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"


def rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / python RNG states as tensors, lists and ints (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_run_checkpoint(
    path: str | Path, model: nn.Module, meta: dict[str, Any], training: dict[str, Any] | None = None
) -> Path:
    """Atomically write ``model`` + ``meta`` (+ the ``training`` resume state for last.pt) to ``path``."""
    payload = checkpoint_payload(model, **meta)
    if training is not None:
        payload["training"] = training
    return write_checkpoint(payload, path)


def read_resume_state(run_dir: str | Path) -> dict[str, Any]:
    """The payload of ``RUN_DIR/last.pt``; a one-line UnetsegError when there is nothing to resume."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UnetsegError(f"--resume {run_dir}: no such run folder")
    path = run_dir / LAST_NAME
    if not path.is_file():
        raise UnetsegError(f"--resume {run_dir}: no {LAST_NAME} in that folder (nothing to resume)")
    payload = read_checkpoint(path)
    if "training" not in payload:
        raise UnetsegError(f"--resume {run_dir}: {path} holds no training state")
    return payload


def training_state(c: Any, state: Any, best_miou: float | None, best_epoch: int | None,
                   last_miou: float | None, best_score: tuple[float, ...] = ()) -> dict[str, Any]:
    """The ``"training"`` dict of last.pt: optimizer, scheduler, scaler, position, scores, RNG states."""
    return {
        "optimizer": c.optimizer.state_dict(),
        "scheduler": c.scheduler.state_dict(),
        "scaler": c.scaler.state_dict() if c.scaler is not None else None,
        "state": asdict(state),
        "best_miou": best_miou,
        "best_epoch": best_epoch,
        "best_score": list(best_score),  # what best.pt was chosen by (the trainer's selection), highest best
        "last_miou": last_miou,
        "rng": rng_state(),
        "ema": c.ema.state_dict() if c.ema is not None else None,
    }


def restore_training(c: Any, payload: dict[str, Any], path: str | Path = LAST_NAME) -> dict[str, Any]:
    """Load last.pt's weights and optimisation state into the run's components ``c``; returns its training dict.

    Raises a one-line UnetsegError naming ``path`` when the stored state does not fit this run.
    """
    load_weights(c.bare, payload["state_dict"], path)
    try:
        tr = payload["training"]
        c.optimizer.load_state_dict(tr["optimizer"])
        c.scheduler.load_state_dict(tr["scheduler"])
        if c.scaler is not None and tr.get("scaler"):
            c.scaler.load_state_dict(tr["scaler"])
        set_rng_state(tr["rng"])
        if c.ema is not None:  # the config check before made sure last.pt was trained with it too
            c.ema.load_state_dict(tr["ema"])
        for key in ("state", "best_miou", "best_epoch", "last_miou"):
            tr[key]  # noqa: B018  checked here so a damaged file fails before training starts
    except Exception as err:  # noqa: BLE001  torch/KeyError/TypeError: the file's state does not fit
        what = f"missing {err}" if isinstance(err, KeyError) else str(err).strip().splitlines()[0]
        raise UnetsegError(f"--resume: {path} cannot be resumed: its training state is damaged or does not fit "
                           f"this run ({type(err).__name__}: {what})") from None
    return tr
