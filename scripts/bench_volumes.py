"""The ``volumes`` section of ``scripts/benchmark.py``: a 3D U-Net on the brain volume, unetseg against MONAI.

Model: a same-padding 3D U-Net (base ``--unet-base`` // 2, depth 3, 1 -> 3 classes), briefly trained on 64^3
patches of the brain sample's volume (``--fit-steps`` Adam steps), its halo then measured on the held-out slab as
training does (:func:`unetseg.training.halo.measure_halo`). Volume: the whole brain sample (143 x 208 x 176).

Runs, in one process on the same volume: ``predict_tiled`` defaults (amp auto, halo auto = measured, tiles by
memory, engine auto), fp32 (``amp=False``), the exact halo, the torch engine, half the measured halo, and MONAI's 3D ``sliding_window_inference`` (overlap 0.25,
gaussian or constant blending, the model in channels_last_3d) at roi 64^3 / 96^3 / 128^3 and sw_batch 1 / 4, fp32 and under bf16
autocast where the CPU has fast bf16 (the same precision rule as unetseg's amp="auto"): its best counts. Agreement
is with one fp32 pass over the whole mirror-padded volume at the exact halo. Memory: ``unetseg predict`` of a 512^3
uint8 NIfTI volume in a child process, peak RSS above ``import unetseg``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import unetseg
from unetseg.data.normalization import Normalization
from unetseg.data.samples import brain_volume, load_sample
from unetseg.data.volumes import VolumePatches, volume_bands
from unetseg.models.geometry import Geometry
from unetseg.models.precision import cpu_has_fast_bf16
from unetseg.training.halo import measure_halo


def fit_volume_model(base: int, steps: int) -> torch.nn.Module:
    """A same-padding 3D U-Net trained ``steps`` Adam steps on 64^3 patches of the brain sample's training slabs,
    with its normalisation and measured halo in its meta record."""
    train = load_sample("brain", "train", volume=True)
    val = load_sample("brain", "val", volume=True)
    norm = Normalization.from_images([volume_bands(v) for v in train.images])
    torch.manual_seed(0)
    model = unetseg.UNet(1, 3, base_channels=base, depth=3, padding="same", spatial_dims=3)
    patches = VolumePatches(train.images, train.masks, None, input_shape=(64, 64, 64), margins=(0, 0, 0),
                            normalization=norm, patches_per_epoch=2 * steps, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        batch = [patches[2 * step + i] for i in range(2)]
        x = torch.stack([b["image"] for b in batch])
        y = torch.stack([b["mask"] for b in batch])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.normalization = norm
    found = measure_halo(model, val.images, normalization=norm)
    if found is not None:
        model.meta = model.meta.with_halo(found)
    return model


def whole_volume_labels(model: torch.nn.Module, volume: np.ndarray) -> np.ndarray:
    """fp32 labels of one pass over the whole volume, mirror-padded by the exact halo (the reference)."""
    geometries = Geometry.axes(model)
    pads = [(g.halo_for("exact"), g.smallest_valid_at_least(n + 2 * g.halo_for("exact")) - n - g.halo_for("exact"))
            for n, g in zip(volume.shape, geometries, strict=True)]
    x = model.normalization.apply(volume[..., None])
    x = np.pad(x, (*pads, (0, 0)), mode="reflect")
    with torch.inference_mode():
        logits = model(torch.from_numpy(x).permute(3, 0, 1, 2)[None].contiguous())
    crop = tuple(slice(a, a + n) for (a, _), n in zip(pads, volume.shape, strict=True))
    return logits[0].argmax(0).numpy()[crop].astype(np.uint8)


def monai_volume_labels(model: torch.nn.Module, volume: np.ndarray, roi: int, sw_batch: int,
                        bf16: bool, mode: str = "gaussian") -> np.ndarray:
    from monai.inferers import sliding_window_inference

    net = model.to(memory_format=torch.channels_last_3d)
    x = torch.from_numpy(model.normalization.apply(volume[..., None])).permute(3, 0, 1, 2)[None].contiguous(
        memory_format=torch.channels_last_3d)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = sliding_window_inference(x, roi_size=(roi,) * 3, sw_batch_size=sw_batch, predictor=net, overlap=0.25,
                                     mode=mode)
    return y[0].argmax(0).numpy().astype(np.uint8)


def _timed(fn, repeats: int) -> tuple[np.ndarray, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def memory_run(model: torch.nn.Module, workdir: Path, side: int, child: str) -> dict:
    """``unetseg predict --format nifti`` of a SIDE^3 uint8 NIfTI (the brain tiled up) in a child process running
    ``child`` (benchmark.py's RSS-sampling CLI runner)."""
    from unetseg.io.nifti import write_nifti

    path = workdir / f"volume_{side}.nii"
    if not path.exists():
        brain = brain_volume().image
        reps = [-(-side // n) for n in brain.shape]
        write_nifti(path, np.tile(brain, reps)[:side, :side, :side], np.eye(4))
    ckpt = unetseg.save_checkpoint(model, workdir / "volume_model.pt")
    out = workdir / f"volume_{side}_out"
    args = ["predict", "--checkpoint", str(ckpt), "--input", str(path), "--output", str(out), "--format", "nifti"]
    proc = subprocess.run([sys.executable, "-c", child, *args], capture_output=True, text=True, check=True)
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"side": side, **run, "growth_mib": run["peak_mib"] - run["base_mib"]}


def volumes_section(base: int, steps: int, repeats: int, workdir: Path, memory_side: int, child: str) -> dict:
    model = fit_volume_model(base, steps)
    volume = brain_volume().image
    voxels = volume.size
    reference = whole_volume_labels(model, volume)
    runs: dict[str, dict] = {}

    def add(name: str, fn) -> None:
        labels, seconds = _timed(fn, repeats)
        runs[name] = {"seconds": seconds, "mvox_s": voxels / seconds / 1e6,
                      "agreement": float((labels == reference).mean())}
        print(f"  {name}: {runs[name]['mvox_s']:.3f} MVox/s, agreement {100 * runs[name]['agreement']:.3f} %",
              file=sys.stderr)

    report: dict = {}
    add("unetseg defaults", lambda: unetseg.predict_tiled(model, volume, report=report))
    add("unetseg amp=False", lambda: unetseg.predict_tiled(model, volume, amp=False))
    add("unetseg halo=exact", lambda: unetseg.predict_tiled(model, volume, halo="exact"))
    add("unetseg engine=torch", lambda: unetseg.predict_tiled(model, volume, engine="torch"))
    add("unetseg engine=torch amp=False", lambda: unetseg.predict_tiled(model, volume, engine="torch", amp=False))
    half = max(8, (model.meta.halo.pixels if model.meta.halo else 32) // 2)
    add(f"unetseg halo={half} (half the measured)", lambda: unetseg.predict_tiled(model, volume, halo=half))
    add(f"unetseg halo={half} amp=False", lambda: unetseg.predict_tiled(model, volume, halo=half, amp=False))
    precisions = [False, True] if cpu_has_fast_bf16() else [False]
    try:
        import monai  # noqa: F401
    except ImportError:
        precisions = []
    for bf16 in precisions:
        for roi in (64, 96, 128):
            for sw in (1, 4):
                for mode in ("gaussian", "constant"):
                    add(f"MONAI roi {roi} sw_batch {sw} {'bf16' if bf16 else 'fp32'} {mode}",
                        lambda roi=roi, sw=sw, bf16=bf16, mode=mode: monai_volume_labels(model, volume, roi, sw, bf16,
                                                                                         mode))
    monai = [r["mvox_s"] for name, r in runs.items() if name.startswith("MONAI")]
    best = max(monai) if monai else None
    for run in runs.values():
        run["vs_monai_best"] = None if best is None else run["mvox_s"] / best
    halo = model.meta.halo
    return {"volume": list(volume.shape), "model": f"3D U-Net same, base {base}, depth 3, {steps} fit steps",
            "halo": None if halo is None else {"voxels": halo.pixels, "agreement": halo.agreement},
            "chose": {k: report.get(k) for k in ("tile_shape", "num_tiles", "precision", "engine")}, "runs": runs,
            "memory": memory_run(model, workdir, memory_side, child) if memory_side else None}


def print_volumes(section: dict) -> None:
    print(f"\nvolumes ({section['model']}, volume {'x'.join(map(str, section['volume']))}, halo {section['halo']}, "
          f"chose {section['chose']}):")
    for name, run in section["runs"].items():
        ratio = run["vs_monai_best"]
        print(f"  {name:<32} {run['mvox_s']:7.3f} MVox/s  agreement {100 * run['agreement']:.3f} %"
              + ("" if ratio is None else f"  {ratio:.2f}x MONAI best"))
    memory = section.get("memory")
    if memory:
        print(f"  predict --format nifti {memory['side']}^3: peak RSS {memory['growth_mib']:.0f} MiB above import, "
              f"{memory['seconds']:.0f} s")
