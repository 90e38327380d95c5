"""Small synthetic NIfTI volumes for the volume tests: CT-like intensities (air -1000 HU, a soft-tissue blob with
classes 1 and 2, a few extreme voxels), anisotropic spacing and a non-identity affine, written with nibabel."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SPACING = (3.0, 0.8, 0.8)  # (z, y, x) mm: z is coarse (anisotropic)


def oblique_affine(spacing: tuple[float, float, float] = SPACING) -> np.ndarray:
    """A voxel -> world affine with an x flip, a rotation about z and an offset (for nibabel's (x, y, z) indices)."""
    angle = np.deg2rad(20.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-spacing[2], spacing[1], spacing[0]])
    affine[:3, 3] = (40.0, -20.0, 15.0)
    return affine


def ct_case(seed: int, shape: tuple[int, int, int] = (12, 20, 24)) -> tuple[np.ndarray, np.ndarray]:
    """``(image int16 (Z, Y, X) in HU, labels uint8 (Z, Y, X))``: a blob (class 1) with a core (class 2) in air."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    centre = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, 3)
    r = np.sqrt(((z - centre[0]) / (shape[0] / 3)) ** 2 + ((y - centre[1]) / (shape[1] / 3)) ** 2
                + ((x - centre[2]) / (shape[2] / 3)) ** 2)
    labels = np.where(r < 0.5, 2, np.where(r < 1.0, 1, 0)).astype(np.uint8)
    image = np.where(labels == 2, 300.0, np.where(labels == 1, 40.0, -1000.0)) + rng.normal(0, 20, shape)
    image[labels > 0] += rng.normal(0, 1, int((labels > 0).sum())) * 30
    image.flat[rng.choice(image.size, 3, replace=False)] = 3000.0  # metal: clipped by CT normalisation
    return image.astype(np.int16), labels


def write_volume(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    """Write a (Z, Y, X) volume with nibabel (its (x, y, z) array order) and ``affine``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), affine), str(path))
    return path


def write_cases(root: Path, n: int = 3, shape: tuple[int, int, int] = (12, 20, 24),
                spacing: tuple[float, float, float] = SPACING) -> tuple[Path, Path]:
    """``n`` CT cases as ``root/images/case{i}.nii.gz`` and ``root/masks/case{i}.nii.gz``; returns the folders."""
    for i in range(n):
        image, labels = ct_case(i, shape)
        write_volume(root / "images" / f"case{i}.nii.gz", image, oblique_affine(spacing))
        write_volume(root / "masks" / f"case{i}.nii.gz", labels, oblique_affine(spacing))
    return root / "images", root / "masks"
