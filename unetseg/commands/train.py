"""``unetseg train``: train a model from a YAML config into a run folder."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import UnetsegError
from .plan import add_data_arguments, announce


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model (from the data alone, or a YAML config)",
                           description="Train a segmentation model. Without a config (--images and --masks, or "
                                       "--sample) the run is planned from the data (see `unetseg plan`) and the plan "
                                       "is saved in the run folder as plan.yaml; a YAML config overrides the plan. "
                                       "Each run folder holds the resolved config, metrics.csv, best.pt, last.pt and "
                                       "plots.")
    train.add_argument("config", nargs="?", default=None,
                       help="YAML run config (see configs/ and `unetseg plan`); omit it to plan from --images/--masks")
    add_data_arguments(train)
    train.add_argument("--out", default=None, help="run folder (default: runs/<config name>-<timestamp>)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                       help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue the run in RUN_DIR exactly where its last.pt left off")
    train.add_argument("--folds", type=int, default=None, metavar="K",
                       help="k-fold cross-validation: K runs in OUT/fold0.. (file folds, or region folds of the "
                            "data.split_grid blocks for fewer than 5 images or than K), then OUT/cv.json and a table: "
                            "per-fold scores (objects' AP@0.5, AP@0.75, PQ on instance masks), their mean, spread "
                            "and pooled scores; `predict --checkpoint OUT` runs their ensemble")
    train.add_argument("--init", default=None, metavar="CKPT",
                       help="fine-tune: start from this checkpoint's weights and architecture (other classes: the "
                            "head is rebuilt, rows of classes with the same names kept; = --set train.init=CKPT)")


def run(args: argparse.Namespace) -> int:
    if args.folds is not None:  # before the plan's minutes of reading and probing
        from ..training.folds import check_fold_count

        check_fold_count(args.folds)
    announce(args)
    from ..config import load_config
    from ..training import train

    overrides = [*args.overrides, *([f"train.init={json.dumps(args.init)}"] if args.init else [])]  # YAML-quoted
    if args.config is None:
        if not (args.images or args.masks or args.sample):
            raise UnetsegError("give a YAML config, or --images DIR and --masks DIR (or --sample NAME) to train "
                               "from a plan of the data")
        config, args.out, name = _planned(args, overrides)
    else:
        if args.images or args.masks or args.sample or args.volume:
            raise UnetsegError("give a config or --images/--masks (--sample, --volume) to plan from, not both")
        config, name = load_config(args.config, overrides), Path(args.config).stem
    rank = int(os.environ.get("RANK", "0"))
    if args.folds is not None:
        if args.resume:
            raise UnetsegError("--folds resumes by itself: run the same command with the same --out")
        return _folds(config, args)
    try:
        result = train(config, args.out, args.resume, name=name, started=getattr(args, "started", None))
    except UnetsegError:
        if rank != 0:  # every rank fails alike; one line is enough
            return 2
        raise
    if rank == 0:
        best = f"{result.best_miou:.4f} (epoch {result.best_epoch})" if result.best_miou is not None else "n/a"
        print(f"run folder: {result.run_dir}\nbest val mIoU: {best}; {result.epochs} epoch(s), "
              f"{result.global_step} steps, {result.seconds / 60:.1f} min, stopped by {result.stopped_by}, "
              f"{result.precision}, {result.images_per_s:.1f} images/s")
    return 0


def _planned(args: argparse.Namespace, overrides: list[str]) -> Any:
    """The planned config (with --set overrides), and the run folder that keeps the plan as plan.yaml."""
    from ..config.run import validate_config
    from ..io.maps import write_json, write_text
    from ..training.setup import default_run_dir
    from .plan import make_plan_from_args

    if args.resume:
        raise UnetsegError("--resume RUN_DIR takes the run's config: unetseg train RUN_DIR/config.yaml --resume RUN_DIR")
    out = Path(args.out) if args.out else default_run_dir("plan")
    if args.folds is not None and (out / "plan.yaml").is_file():
        return _saved_plan(args, out, overrides), str(out), "plan"
    fixed = {o.split("=", 1)[0].strip() for o in overrides} | ({"data.instance_target"} if args.init else set())
    plan = make_plan_from_args(args, out / "probe", fixed)
    if args.init:  # fine-tuning keeps the checkpoint's architecture: the plan's model choices yield to it
        plan.config["model"] = {}
        plan.header.append(f"model: the architecture of --init {args.init}")
    plan.override(overrides)
    config = validate_config(plan.config, "plan")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "plan.yaml", plan.to_yaml())  # with --folds: beside the fold folders
    write_json(out / "fingerprint.json", plan.fingerprint)
    print(plan.to_yaml(), end="")
    return config, str(out), "plan"


def _saved_plan(args: argparse.Namespace, out: Path, overrides: list[str]) -> Any:
    """A rerun of ``train --folds`` without a config: the plan the first run saved in OUT (its folds resume with
    the model they started with; a new plan's step timings could choose another), checked to be of the same data
    (fingerprint.json) and --minutes; anything else is a one-line UnetsegError naming the file."""
    from ..config import load_config
    from ..config.base import read_yaml
    from .plan import fingerprint_from_args

    saved, planned = out / "fingerprint.json", out / "plan.yaml"
    fp, _ = fingerprint_from_args(args)
    try:
        recorded = json.loads(saved.read_text())
    except (OSError, ValueError) as err:
        raise UnetsegError(f"{saved}: cannot read the fingerprint the folds in {out} were planned from "
                           f"({type(err).__name__}); give another --out") from None
    if json.loads(json.dumps(fp.to_dict(), default=str)) != recorded:
        raise UnetsegError(f"{out}: its folds were planned from other data ({saved}); give the same --images/--masks "
                           "(or --sample) to resume them, or another --out")
    minutes = (read_yaml(planned).get("train") or {}).get("time_budget_minutes")
    if minutes != args.minutes:
        raise UnetsegError(f"{planned}: its folds were planned for --minutes {minutes}, not {args.minutes:g}; give "
                           "the same --minutes to resume them, or another --out")
    print(f"unetseg plan: resuming the folds with the plan in {planned} (same data and --minutes)", file=sys.stderr,
          flush=True)
    return load_config(planned, overrides)


def _folds(config: Any, args: argparse.Namespace) -> int:
    from ..training.folds import folds_table, train_folds

    done = train_folds(config, args.out, args.folds, name=Path(args.config or "plan").stem)
    cv = done.cv
    split = cv.get("split", {})
    kind = (f"region folds of {'x'.join(map(str, split['grid']))} blocks" if split.get("mode") == "regions"
            else "file folds")
    lines = [f"cross-validation: {cv['folds']} {kind}, each fold's best.pt scored on its own validation part",
             folds_table(cv)]
    held = cv.get("held_out")
    if held:
        best = max(m["miou"] for m in held["per_fold"])
        lines.append(f"held-out mIoU: ensemble {held['ensemble']['miou']:.4f}, best fold {best:.4f}")
    print("\n".join([*lines, f"cv.json and folds: {done.run_dir}"]))
    return 0
