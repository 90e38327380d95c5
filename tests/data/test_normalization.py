import numpy as np
import pytest

from unetseg import Normalization


def test_default_scales_by_dtype():
    norm = Normalization()
    assert np.allclose(norm.apply(np.full((2, 2), 255, np.uint8)), 1.0)
    assert np.allclose(norm.apply(np.full((2, 2), 65535, np.uint16)), 1.0)
    assert np.allclose(norm.apply(np.full((2, 2), 3.5, np.float32)), 3.5)
    assert norm.apply(np.zeros((4, 5), np.uint8)).shape == (4, 5, 1)


def test_statistics_from_images_standardise_them():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    norm = Normalization.from_images(images)
    stacked = np.concatenate([norm.apply(im).reshape(-1, 3) for im in images])
    assert np.allclose(stacked.mean(0), 0, atol=1e-4) and np.allclose(stacked.std(0), 1, atol=1e-3)
    assert Normalization.from_dict(norm.to_dict()) == norm


def test_bad_statistics_are_rejected():
    with pytest.raises(ValueError, match="differ in length"):
        Normalization(mean=(0.0, 0.0), std=(1.0,))
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalization(std=(0.0,))
