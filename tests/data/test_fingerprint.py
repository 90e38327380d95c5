"""The dataset fingerprint: how masks code classes, class shares, object sizes, intensity tails and nodata, on
small real and synthetic data of every kind a user brings."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from unetseg.data.fingerprint import fingerprint_folder, fingerprint_sample, typical_diameter
from unetseg.errors import UnetsegError

NODATA_TAG = [(42113, "s", 0, "-9999", True)]


def folder(root: Path, images: list[np.ndarray], masks: list[np.ndarray], suffix: str = ".png",
           image_tags: list | None = None) -> tuple[Path, Path]:
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        for sub, array, tags in (("images", image, image_tags), ("masks", mask, None)):
            path = root / sub / f"im{i}{suffix}"
            if suffix == ".tif":
                tifffile.imwrite(path, array, extratags=tags or [])
            else:
                cv2.imwrite(str(path), array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR))
    return root / "images", root / "masks"


def disks(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    """Object ids 1..n of disks (0 = background)."""
    ids = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k, (y, x) in enumerate(centres, start=1):
        ids[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = k
    return ids


def test_index_masks_class_shares_and_object_size(tmp_path, rng):
    ids = disks((64, 80), [(16, 16), (40, 50)], 6)
    fp = fingerprint_folder(*folder(tmp_path, [rng.integers(0, 255, (64, 80), dtype=np.uint8)], [(ids > 0).astype(np.uint8)]))
    assert fp.coding == "index" and fp.num_classes == 2 and fp.images == 1 and fp.bands == 1
    assert fp.class_fractions[1] == pytest.approx((ids > 0).mean())
    assert fp.object_diameter == pytest.approx(2 * np.sqrt((ids == 1).sum() / np.pi)) and fp.objects == 2


def test_zero_255_masks_are_value_coded(tmp_path, rng):
    mask = np.where(rng.random((32, 32)) > 0.7, 255, 0).astype(np.uint8)
    fp = fingerprint_folder(*folder(tmp_path, [rng.integers(0, 255, (32, 32), dtype=np.uint8)], [mask]))
    assert fp.coding == "values" and fp.class_values == [0, 255]


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint32])
def test_instance_masks_are_recognised(tmp_path, rng, dtype):
    """int32/uint32 label images (cellpose's, StarDist's) too: their ids are not read as float32 values."""
    centres = [(8 + 16 * (k // 5), 8 + 16 * (k % 5)) for k in range(20)]
    ids = disks((80, 80), centres, 5).astype(dtype)
    fp = fingerprint_folder(*folder(tmp_path, [rng.integers(0, 255, (80, 80), dtype=np.uint8)], [ids], ".tif"))
    assert fp.coding == "instances" and fp.has_instances and fp.objects == 20


def test_colour_masks(tmp_path, rng):
    mask = np.zeros((30, 40, 3), np.uint8)
    mask[5:15, 5:15] = (255, 0, 0)
    mask[20:28, 20:35] = (0, 0, 255)
    fp = fingerprint_folder(*folder(tmp_path, [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)], [mask]))
    assert fp.coding == "color" and sorted(fp.colors) == [(0, 0, 0), (0, 0, 255), (255, 0, 0)] and fp.bands == 3


def test_seven_band_float_with_nodata_and_heavy_tails(tmp_path, rng):
    image = rng.normal(0, 1, (7, 60, 50)).astype(np.float32)
    image[:, :, :5] = -9999  # nodata columns
    image[2, 30, 30] = 5000.0  # one saturated pixel in band 2
    mask = rng.integers(1, 4, (60, 50)).astype(np.uint8)
    images, masks = folder(tmp_path, [image], [mask], ".tif", image_tags=NODATA_TAG)
    fp = fingerprint_folder(images, masks)
    assert fp.bands == 7 and fp.dtype == "float32" and fp.nodata == -9999
    assert fp.invalid_fraction == pytest.approx(0.1)
    assert fp.coding == "values" and fp.class_values == [1, 2, 3]
    assert fp.heavy_tailed() == [False, False, True, False, False, False, False]
    assert fp.lowest[0] > -10  # nodata is not data


def test_one_band_uint16_and_tiny_images(tmp_path, rng):
    images = [rng.integers(0, 60000, (12, 14), dtype=np.uint16) for _ in range(3)]
    masks = [rng.integers(0, 3, (12, 14), dtype=np.uint8) for _ in range(3)]
    fp = fingerprint_folder(*folder(tmp_path, images, masks, ".tif"))
    assert fp.dtype == "uint16" and fp.smallest_side == 12 and fp.coding == "index" and fp.num_classes == 3


def test_samples(tmp_path):
    nuclei = fingerprint_sample("nuclei")
    assert nuclei.has_instances and nuclei.class_names == ["background", "nucleus"] and 15 < nuclei.object_diameter < 40
    assert fingerprint_sample("brain").images == 108


def test_bad_folders_are_one_line(tmp_path, rng):
    with pytest.raises(UnetsegError, match="does not exist"):
        fingerprint_folder(tmp_path / "nope", tmp_path / "nope2")
    mask = rng.random((20, 20)).astype(np.float32)
    with pytest.raises(UnetsegError, match="non-integral"):
        fingerprint_folder(*folder(tmp_path / "f", [rng.integers(0, 255, (20, 20), dtype=np.uint8)], [mask], ".tif"))


def test_typical_diameter_is_area_weighted():
    assert typical_diameter([]) is None
    assert typical_diameter([100, 100, 10_000]) == pytest.approx(2 * np.sqrt(10_000 / np.pi))


@pytest.mark.parametrize("fill", [0, 255, (0, 128, 255)])
def test_masks_of_one_class_are_one_line_naming_the_folder(tmp_path, rng, fill):
    """A folder whose masks all hold one value (or colour) has nothing to separate: planned anyway, it trained a
    one-class model whose first validation stopped the run ("prediction holds label 1, outside 0..0")."""
    shape = (24, 30) if isinstance(fill, int) else (24, 30, 3)
    masks = [np.full(shape, fill, np.uint8) for _ in range(2)]
    images = [rng.integers(0, 255, (24, 30), dtype=np.uint8) for _ in range(2)]
    with pytest.raises(UnetsegError, match=r"masks: every mask holds the one (value|colour) .*at least two classes"):
        fingerprint_folder(*folder(tmp_path, images, masks))
