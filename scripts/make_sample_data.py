#!/usr/bin/env python
"""Derive the built-in sample datasets shipped in ``unetseg/data/samples/``.

Run once by a maintainer; the outputs are committed as package data, so nothing is fetched at run
time. The derivation is deterministic: re-running it on the same sources gives identical arrays.

Sources (all redistributable, see the ``LICENSES.md`` this script writes):

* ``--nuclei-image`` / ``--nuclei-mask``: ``img2d.tif`` / ``mask2d.tif`` from the stardist 0.9.2
  wheel (``stardist/data/images/``), a 2018 Data Science Bowl (BBBC038) fluorescence image.
* ``--mni-dir``: ``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz`` from the nilearn
  0.14.1 wheel (``nilearn/datasets/data/``), the MNI ICBM152 2009a nonlinear symmetric template.
* ``--fashion-dir``: ``train-images-idx3-ubyte.gz`` / ``train-labels-idx1-ubyte.gz`` of
  Fashion-MNIST (Debian package ``dataset-fashion-mnist``).

Outputs (``np.savez_compressed``):

* ``nuclei.npz``: ``image`` (512, 512) uint8 -- the uint16 original holds only 0..235, so the cast
  is lossless; ``instances`` (512, 512) uint16 instance ids, 0 = background, as in the source.
* ``brain.npz``: ``image`` (S, 208, 176) uint8 axial T1 slices, ``labels`` (S, 208, 176) uint8
  (0 background, 1 grey matter, 2 white matter), ``z`` (S,) int16 voxel index of each slice in the
  197x233x189 template grid, ``crop`` (4,) int16 = (y0, y1, x0, x1) in voxel indices.
* ``fashion_items.npz``: ``items`` (N, 28, 28) uint8, ``labels`` (N,) uint8 class 0..9, ``index``
  (N,) int32 position in the Fashion-MNIST train split; N/10 items per class.

Usage::

    uv run python scripts/make_sample_data.py \\
        --nuclei-image /tmp/src/sd/stardist/data/images/img2d.tif \\
        --nuclei-mask /tmp/src/sd/stardist/data/images/mask2d.tif \\
        --mni-dir /tmp/src/nl/nilearn/datasets/data \\
        --fashion-dir /tmp/src/fm/usr/share/datasets/fashion-mnist
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "unetseg" / "data" / "samples"

# Brain sample geometry. The brain (GM+WM probability > 0.5) spans y 28..207 and x 27..169 in the
# 197x233x189 template; a 208x176 window centred on that box holds it with margin, and both sides
# are multiples of 16 so a depth-4 "same" U-Net takes the slices unpadded.
BRAIN_CROP_HW = (208, 176)
# An axial slice is kept when at least this many voxels are labelled GM or WM (about 1.6% of the
# crop): this drops the near-empty caps at the top of the head and below the cerebellum.
BRAIN_MIN_TISSUE_VOXELS = 600

FASHION_PER_CLASS = 200


def read_nifti_uint8(path: Path) -> np.ndarray:
    """Read a gzipped single-file NIfTI-1 volume of datatype uint8 as a (z, y, x) uint8 array.

    Only what the MNI files use is supported (little-endian, 3-D, DT_UINT8, scl_slope 0 or 1,
    scl_inter 0); anything else raises, so a different source cannot be misread silently.
    """
    raw = gzip.open(path, "rb").read()
    if struct.unpack("<i", raw[0:4])[0] != 348:
        raise ValueError(f"{path}: not a little-endian NIfTI-1 file")
    dim = struct.unpack("<8h", raw[40:56])
    datatype = struct.unpack("<h", raw[70:72])[0]
    vox_offset = int(struct.unpack("<f", raw[108:112])[0])
    slope, inter = struct.unpack("<2f", raw[112:120])
    if dim[0] != 3 or datatype != 2 or slope not in (0.0, 1.0) or inter != 0.0:
        raise ValueError(f"{path}: unsupported NIfTI (dim={dim}, datatype={datatype}, scl={slope},{inter})")
    nx, ny, nz = dim[1:4]
    # NIfTI stores x fastest (Fortran order); reading C-order with reversed shape gives [z, y, x].
    return np.frombuffer(raw, np.uint8, count=nx * ny * nz, offset=vox_offset).reshape(nz, ny, nx)


def make_nuclei(image_path: Path, mask_path: Path) -> dict[str, np.ndarray]:
    image = tifffile.imread(image_path)
    instances = tifffile.imread(mask_path)
    if image.shape != instances.shape or image.ndim != 2:
        raise ValueError(f"nuclei: image {image.shape} and mask {instances.shape} must be equal 2-D shapes")
    if image.max() > 255 or image.min() < 0:
        raise ValueError("nuclei: image values exceed 0..255; the uint8 cast would lose data")
    return {"image": image.astype(np.uint8), "instances": instances.astype(np.uint16)}


def make_brain(mni_dir: Path) -> dict[str, np.ndarray]:
    stem = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    t1, gm, wm = (read_nifti_uint8(mni_dir / stem.format(k)) for k in ("t1", "gm", "wm"))
    gm = gm.astype(np.int16)
    wm = wm.astype(np.int16)
    # Probabilities are stored scaled to 0..255 and gm + wm <= 255; the rest (CSF, skull, air) is
    # "background". Each voxel takes the most probable of the three, so CSF and non-brain are 0.
    bg = 255 - gm - wm
    labels = np.argmax(np.stack([bg, gm, wm]), axis=0).astype(np.uint8)

    # Robust rescale of T1: 0 stays 0, the 99.5th percentile of head voxels maps to 255.
    t1f = t1.astype(np.float32)
    hi = float(np.percentile(t1f[t1f > 0], 99.5))
    t1u8 = np.clip(np.rint(t1f * (255.0 / hi)), 0, 255).astype(np.uint8)

    tissue = labels > 0
    _, yy, xx = np.nonzero(tissue)
    h, w = BRAIN_CROP_HW
    cy = (int(yy.min()) + int(yy.max()) + 1) // 2
    cx = (int(xx.min()) + int(xx.max()) + 1) // 2
    y0, x0 = cy - h // 2, cx - w // 2
    if y0 < 0 or x0 < 0 or y0 + h > t1.shape[1] or x0 + w > t1.shape[2]:
        raise ValueError("brain: crop window does not fit the volume")
    crop = (slice(None), slice(y0, y0 + h), slice(x0, x0 + w))

    count = tissue[crop].sum(axis=(1, 2))
    z = np.nonzero(count >= BRAIN_MIN_TISSUE_VOXELS)[0]
    # Voxel axes are RAS (+y anterior): flip rows so anterior is up; +x (right) stays to the right
    # of the image, i.e. the neurological convention that nilearn's viewers use.
    image = t1u8[crop][z][:, ::-1, :]
    lab = labels[crop][z][:, ::-1, :]
    return {
        "image": np.ascontiguousarray(image),
        "labels": np.ascontiguousarray(lab),
        "z": z.astype(np.int16),
        "crop": np.array([y0, y0 + h, x0, x0 + w], dtype=np.int16),
    }


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) of unsigned bytes."""
    raw = gzip.open(path, "rb").read()
    magic = struct.unpack(">i", raw[:4])[0]
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = magic & 0xFF
    shape = struct.unpack(f">{ndim}i", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def make_fashion(fashion_dir: Path, per_class: int, seed: int) -> dict[str, np.ndarray]:
    images = read_idx(fashion_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx(fashion_dir / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(10):
        (idx,) = np.nonzero(labels == c)
        picks.append(np.sort(rng.choice(idx, size=per_class, replace=False)))
    index = np.sort(np.concatenate(picks))
    return {"items": images[index], "labels": labels[index], "index": index.astype(np.int32)}


LICENSES_MD = """\
# Licences of the built-in sample data

These arrays ship inside the package so that `unetseg demo`, the tests and the examples run
without downloads. They were written by `scripts/make_sample_data.py`; re-run it to check or
regenerate them. Loaders: `unetseg.data.samples.load_sample`.

## `nuclei.npz` -- fluorescence nuclei (2018 Data Science Bowl, BBBC038)

* **Source:** `stardist/data/images/img2d.tif` and `mask2d.tif` from the stardist 0.9.2 wheel
  (<https://github.com/stardist/stardist>, BSD-3-Clause). The image and its annotation come from
  the 2018 Data Science Bowl training set, image set BBBC038v1 of the Broad Bioimage Benchmark
  Collection (<https://bbbc.broadinstitute.org/BBBC038>).
* **Derivation:** `image` is the 512x512 image cast from uint16 to uint8 (values are 0..235, so the
  cast is lossless); `instances` is the instance mask unchanged (uint16, 0 background, 125 nuclei).
* **Licence:** BBBC038 images and annotations are released under CC0 1.0 (public domain
  dedication). Please cite: Caicedo, J.C., Goodman, A., Karhohs, K.W. et al. "Nucleus
  segmentation across imaging experiments: the 2018 Data Science Bowl." *Nature Methods* 16,
  1247-1253 (2019). https://doi.org/10.1038/s41592-019-0612-7. Packaging by the stardist authors
  (Schmidt, Weigert, Broaddus, Myers, MICCAI 2018).

## `brain.npz` -- MNI ICBM152 2009a T1 template with grey/white matter labels

* **Source:** `mni_icbm152_{{t1,gm,wm}}_tal_nlin_sym_09a_converted.nii.gz` from the nilearn 0.14.1
  wheel (`nilearn/datasets/data/`), the ICBM 2009a Nonlinear Symmetric template
  (<https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009>) resampled by nilearn to 1 mm,
  197x233x189, uint8.
* **Derivation:** labels per voxel = argmax(1 - p_GM - p_WM, p_GM, p_WM) -> 0 background (CSF,
  skull, air), 1 grey matter, 2 white matter. T1 is rescaled to uint8 with the 99.5th percentile
  of non-zero voxels at 255. In-plane crop 208x176 (rows anterior->posterior, columns patient
  left->right, i.e. anterior up, neurological convention) centred on the brain's bounding box;
  the crop's voxel bounds are stored in `crop`. Axial slices with at least {min_tissue} GM/WM
  voxels are kept ({n_slices} slices, z = {z0}..{z1}); `z` holds each slice's voxel index.
* **Licence / copyright notice (required for redistribution):**

  > Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
  > Institute, McGill University. Permission to use, copy, modify, and distribute this software
  > and its documentation for any purpose and without fee is hereby granted, provided that the
  > above copyright notice appear in all copies. The authors and McGill University make no
  > representations about the suitability of this software for any purpose. It is provided "as
  > is" without express or implied warranty. The authors are not responsible for any data loss,
  > equipment damage, property loss, or injury to subjects or patients resulting from the use or
  > misuse of this software package.

  Please cite: V.S. Fonov, A.C. Evans, K. Botteron, C.R. Almli, R.C. McKinstry, D.L. Collins and
  BDCG, "Unbiased average age-appropriate atlases for pediatric studies", *NeuroImage* 54(1),
  2011; and V.S. Fonov, A.C. Evans, R.C. McKinstry, C.R. Almli and D.L. Collins, "Unbiased
  nonlinear average age-appropriate brain templates from birth to adulthood", *NeuroImage* 47,
  Supplement 1, 2009, S102.

## `fashion_items.npz` -- Fashion-MNIST items (for the `fashion-scenes` generator)

* **Source:** `train-images-idx3-ubyte.gz` and `train-labels-idx1-ubyte.gz` from Debian's
  `dataset-fashion-mnist` package (<https://github.com/zalandoresearch/fashion-mnist>).
* **Derivation:** {per_class} items per class ({n_items} in total) drawn without replacement from
  the 60,000-image train split with `numpy.random.default_rng({seed})`, stored in train-split
  order; `index` holds their positions in that split. Classes: 0 T-shirt/top, 1 Trouser,
  2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot.
* **Licence:** MIT (Expat).

  > The MIT License (MIT) Copyright (c) 2017 Zalando SE, https://tech.zalando.com
  >
  > Permission is hereby granted, free of charge, to any person obtaining a copy of this
  > software and associated documentation files (the "Software"), to deal in the Software without
  > restriction, including without limitation the rights to use, copy, modify, merge, publish,
  > distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
  > Software is furnished to do so, subject to the following conditions:
  >
  > The above copyright notice and this permission notice shall be included in all copies or
  > substantial portions of the Software.
  >
  > THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
  > BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
  > NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
  > DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
  > OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

## Content checksums

SHA-256 over each array's name, dtype, shape and bytes in key order (the npz files themselves
carry zip timestamps, so compare contents, not file bytes):

{checksums}
"""


def content_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the arrays' names, dtypes, shapes and bytes (independent of zip metadata)."""
    h = hashlib.sha256()
    for key, value in arrays.items():
        h.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    src = Path("/tmp/src")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nuclei-image", type=Path, default=src / "sd/stardist/data/images/img2d.tif",
                   help="stardist img2d.tif (default: %(default)s)")
    p.add_argument("--nuclei-mask", type=Path, default=src / "sd/stardist/data/images/mask2d.tif",
                   help="stardist mask2d.tif (default: %(default)s)")
    p.add_argument("--mni-dir", type=Path, default=src / "nl/nilearn/datasets/data",
                   help="folder with the mni_icbm152_*_09a_converted.nii.gz files (default: %(default)s)")
    p.add_argument("--fashion-dir", type=Path, default=src / "fm/usr/share/datasets/fashion-mnist",
                   help="folder with the Fashion-MNIST train-*-ubyte.gz files (default: %(default)s)")
    p.add_argument("--fashion-per-class", type=int, default=FASHION_PER_CLASS,
                   help="Fashion-MNIST items kept per class (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Fashion-MNIST item draw (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: unetseg/data/samples/)")
    args = p.parse_args(argv)

    outputs = {
        "nuclei.npz": make_nuclei(args.nuclei_image, args.nuclei_mask),
        "brain.npz": make_brain(args.mni_dir),
        "fashion_items.npz": make_fashion(args.fashion_dir, args.fashion_per_class, args.seed),
    }
    lines = []
    for name, arrays in outputs.items():
        path = args.out / name
        _save(path, arrays)
        digest = content_digest(arrays)
        lines.append(f"* `{name}`: `{digest}`")
        desc = ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in arrays.items())
        print(f"{path} ({path.stat().st_size / 1e6:.2f} MB): {desc}")

    brain = outputs["brain.npz"]
    fashion = outputs["fashion_items.npz"]
    (args.out / "LICENSES.md").write_text(
        LICENSES_MD.format(
            min_tissue=BRAIN_MIN_TISSUE_VOXELS,
            n_slices=len(brain["z"]),
            z0=int(brain["z"][0]),
            z1=int(brain["z"][-1]),
            per_class=args.fashion_per_class,
            n_items=len(fashion["labels"]),
            seed=args.seed,
            checksums="\n".join(lines),
        )
    )
    print(f"{args.out / 'LICENSES.md'} written")


if __name__ == "__main__":
    main()
