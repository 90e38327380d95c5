"""The figures of "accuracy without a config", as a user runs them (the unetseg CLI), side by side in one run.

Sections (``--sections``, default all):

* ``plan``: on the built-in nuclei and brain samples and the shipped Landsat scene, ``unetseg train`` without a
  config (plan + train, ``--minutes M``) against the shipped hand-written config given the same time budget
  (``--set train.time_budget_minutes=M``); best validation mIoU of each, on the same validation images, and the
  plan's choices.
* ``folds``: ``unetseg train --sample brain --folds 5`` (each fold planned for ``--fold-minutes``); on the sample's
  held-out slices, the folds' ensemble against its best member, and how well the ensemble's predictive entropy
  ranks its wrong pixels above its right ones (AUROC).
* ``finetune``: 10 % of the brain training slices as a folder; ``unetseg train --init`` from the nuclei model of
  the plan section against training from scratch, both planned for ``--finetune-minutes``; mIoU on the held-out
  slices.

    uv run python scripts/accuracy_figures.py --workdir /tmp/acc [--minutes 4] [--sections plan,folds,finetune]

Runs already in WORKDIR are reused (delete them to measure again). Prints a JSON record and writes it to
WORKDIR/figures.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy.stats import rankdata

ROOT = Path(__file__).resolve().parents[1]
LANDSAT = ROOT / "unetseg" / "data" / "samples" / "landsat_nc"
DATASETS = {
    "nuclei": (["--sample", "nuclei"], "configs/nuclei_unet.yaml"),
    "brain": (["--sample", "brain"], "configs/brain_unet.yaml"),
    "landsat": (["--images", str(LANDSAT / "images"), "--masks", str(LANDSAT / "masks")],
                "configs/landsat_nc_unet.yaml"),
}


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "unetseg.cli", *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def cpu_name() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def plan_section(work: Path, minutes: float) -> dict:
    out = {}
    for name, (data_args, hand) in DATASETS.items():
        planned, written = work / f"plan_{name}", work / f"hand_{name}"
        if not (planned / "summary.json").exists():
            cli("train", *data_args, "--minutes", str(minutes), "--out", str(planned))
        if not (written / "summary.json").exists():
            cli("train", hand, "--set", f"train.time_budget_minutes={minutes}", "--out", str(written))
        plan = yaml.safe_load((planned / "plan.yaml").read_text())
        a, b = summary(planned), summary(written)
        out[name] = {
            "planned_miou": a["best_miou"], "hand_miou": b["best_miou"],
            "planned_minus_hand": a["best_miou"] - b["best_miou"],
            "planned": {"epochs": a["epochs"], "steps": a["global_step"], "stopped_by": a["stopped_by"],
                        "model": plan["model"], "patch_size": plan["data"]["patch_size"],
                        "batch_size": plan["train"]["batch_size"], "normalize": plan["data"]["normalize"],
                        "loss": plan["loss"], "class_weights": plan["data"]["weight_map"].get("class_weights")},
            "hand": {"config": hand, "epochs": b["epochs"], "steps": b["global_step"], "stopped_by": b["stopped_by"]},
        }
    return out


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` separating ``positive`` from the rest (Mann-Whitney, ties halved)."""
    ranks = rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def folds_section(work: Path, minutes: float) -> dict:
    import unetseg
    from unetseg.data.samples import load_sample

    cv_dir = work / "folds_brain"
    if not (cv_dir / "cv.json").exists():
        cli("train", "--sample", "brain", "--minutes", str(minutes), "--folds", "5", "--out", str(cv_dir))
    cv = json.loads((cv_dir / "cv.json").read_text())
    models = [unetseg.load_model(p) for p in cv["checkpoints"]]
    held = load_sample("brain", "val")
    entropy, wrong = [], []
    for image, mask in zip(held.images, held.masks, strict=True):
        u = unetseg.predict_tiled(models, image, output="uncertainty", engine="torch")
        labels = unetseg.predict_tiled(models, image, engine="torch")
        entropy.append(u[..., 0].ravel())
        wrong.append((labels != mask).ravel())
    entropy_all, wrong_all = np.concatenate(entropy), np.concatenate(wrong)
    members = [m["miou"] for m in cv["held_out"]["per_fold"]]
    return {"folds": 5, "minutes_per_fold": minutes, "pooled_cv_miou": cv["pooled"]["miou"],
            "held_out_member_miou": members, "held_out_ensemble_miou": cv["held_out"]["ensemble"]["miou"],
            "ensemble_minus_best_member": cv["held_out"]["ensemble_minus_best_member"],
            "entropy_auroc_wrong_vs_right": auroc(entropy_all, wrong_all),
            "held_out_pixels": int(len(wrong_all)), "wrong_pixels": int(wrong_all.sum())}


def finetune_section(work: Path, minutes: float) -> dict:
    import unetseg
    from unetseg.data.samples import load_sample
    from unetseg.training.evaluate import score_images

    parent = work / "plan_nuclei" / "best.pt"
    if not parent.exists():
        raise SystemExit("the finetune section starts from the plan section's nuclei model: run --sections plan first")
    few = work / "brain_10pct"
    train = load_sample("brain", "train")
    if not few.exists():
        for sub in ("images", "masks"):
            (few / sub).mkdir(parents=True)
        for i in range(0, len(train.images), 10):  # every 10th training slice: 10 % of the labels
            cv2.imwrite(str(few / "images" / f"slice{i:03d}.png"), train.images[i])
            cv2.imwrite(str(few / "masks" / f"slice{i:03d}.png"), train.masks[i])
    data = ["--images", str(few / "images"), "--masks", str(few / "masks"), "--minutes", str(minutes)]
    runs = {"scratch": work / "ft_scratch", "init": work / "ft_init"}
    if not (runs["scratch"] / "summary.json").exists():
        cli("train", *data, "--out", str(runs["scratch"]))
    if not (runs["init"] / "summary.json").exists():
        cli("train", *data, "--init", str(parent), "--out", str(runs["init"]))
    held = load_sample("brain", "val")
    items = list(zip(held.images, held.masks, strict=True))
    scores = {}
    for name, run in runs.items():
        model = unetseg.load_model(run / "best.pt")
        scores[name] = score_images(model, items, num_classes=3, engine="torch")["miou"]
    return {"parent": str(parent), "labelled_slices": len(list((few / "images").iterdir())),
            "of_training_slices": len(train.images), "minutes": minutes, "held_out_miou": scores,
            "init_minus_scratch": scores["init"] - scores["scratch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="accuracy_out")
    parser.add_argument("--minutes", type=float, default=4.0, help="plan section: training minutes per run")
    parser.add_argument("--fold-minutes", type=float, default=2.0)
    parser.add_argument("--finetune-minutes", type=float, default=2.0)
    parser.add_argument("--sections", default="plan,folds,finetune")
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    record = {"cpu": cpu_name()}
    sections = args.sections.split(",")
    if "plan" in sections:
        record["plan"] = plan_section(work, args.minutes)
    if "folds" in sections:
        record["folds"] = folds_section(work, args.fold_minutes)
    if "finetune" in sections:
        record["finetune"] = finetune_section(work, args.finetune_minutes)
    text = json.dumps(record, indent=2)
    (work / "figures.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
