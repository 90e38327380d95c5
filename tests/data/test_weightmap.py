
import numpy as np
import pytest
from scipy import ndimage

from unetseg.data.samples import load_sample
from unetseg.data.weightmap import border_cutoff, border_weight_map, class_balance_weights


def brute_force(instances, w0=10.0, sigma=5.0):
    """Full-image distance transforms per object, no cutoff: the reference for the fast version."""
    ids = [i for i in np.unique(instances) if i != 0]
    dists = np.sort(np.stack([ndimage.distance_transform_edt(instances != i) for i in ids]), axis=0)
    border = w0 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))
    return np.where(instances == 0, border, 0.0) + 1.0


def two_boxes(gap):
    inst = np.zeros((40, 80), np.int32)
    inst[10:30, 10:30] = 1
    inst[10:30, 30 + gap : 50 + gap] = 2
    return inst


def test_weight_peaks_in_the_gap_between_close_objects():
    w0, sigma = 10.0, 5.0
    close = border_weight_map(two_boxes(1), w0=w0, sigma=sigma)
    far = border_weight_map(two_boxes(25), w0=w0, sigma=sigma)
    # 1-px gap at column 30: d1 = d2 = 1 -> w_c + w0 exp(-4 / 2 sigma^2), the maximum of the map
    expected = 1.0 + w0 * np.exp(-4.0 / (2 * sigma**2))
    assert close[20, 30] == pytest.approx(expected, rel=1e-5)
    assert close.max() == pytest.approx(expected, rel=1e-5)
    assert np.unravel_index(np.argmax(close), close.shape)[1] == 30
    # separated objects: the mid-gap value is small, d1 + d2 = 26
    assert far[20, 42] == pytest.approx(1.0 + w0 * np.exp(-(26.0**2) / (2 * sigma**2)), abs=1e-3)
    assert far.max() < 2.5
    # no border term on object pixels
    assert np.all(close[two_boxes(1) > 0] == 1.0)


def test_value_approaches_w_c_plus_w0_where_objects_nearly_touch():
    inst = two_boxes(1)
    w = border_weight_map(inst, class_weights=[0.5, 2.0], w0=8.0, sigma=20.0)
    # d1 + d2 = 2 is ~0 relative to sigma=20: w ~ w_c(background) + w0
    assert w[20, 30] == pytest.approx(0.5 + 8.0, rel=0.01)
    assert np.all(w[inst > 0] == 2.0)


def test_matches_full_distance_transforms():
    rng = np.random.default_rng(0)
    inst = np.zeros((96, 96), np.int32)
    for k in range(1, 9):
        y, x = rng.integers(5, 85, size=2)
        inst[y : y + rng.integers(3, 10), x : x + rng.integers(3, 10)] = k * 7  # sparse ids
    fast = border_weight_map(inst)
    ref = brute_force(inst)
    assert np.abs(fast - ref).max() < 1.1e-3  # the cutoff drops terms below 1e-3


def test_no_border_term_with_fewer_than_two_objects():
    inst = np.zeros((30, 30), np.int32)
    assert np.all(border_weight_map(inst) == 1.0)
    inst[5:10, 5:10] = 3
    w = border_weight_map(inst, class_weights="balanced")
    mask = inst > 0
    expected = class_balance_weights([mask.astype(np.uint8)], 2)
    assert np.allclose(w, expected[mask.astype(int)])


def test_class_balance_weights_mean_one_and_ignore():
    mask = np.zeros((10, 10), np.uint8)
    mask[:2] = 1          # 20% class 1
    mask[9, :5] = 255     # ignored
    w = class_balance_weights([mask], 3, ignore_index=255)
    labelled = mask[mask != 255]
    assert w[labelled].mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(75 / 20)
    assert w[2] == 1.0  # absent class
    wm = border_weight_map(np.zeros_like(mask, np.int32), mask, class_weights="balanced", ignore_index=255)
    assert np.all(wm[mask == 255] == 0)
    assert wm[mask != 255].mean() == pytest.approx(1.0)


def test_class_weights_too_short_is_an_error():
    mask = np.array([[0, 1], [2, 0]], np.uint8)
    with pytest.raises(ValueError, match="class_weights"):
        border_weight_map(np.zeros((2, 2), np.int32), mask, class_weights=[1.0, 1.0])


def test_cutoff():
    assert border_cutoff(10.0, 5.0) == pytest.approx(5.0 * np.sqrt(2 * np.log(1e4)))
    assert border_cutoff(0.0, 5.0) == 0.0


def test_nuclei_sample_highlights_gaps():
    split = load_sample("nuclei", "train")
    inst, mask = split.instances[0], split.masks[0]
    w = border_weight_map(inst, mask, class_weights="balanced")  # speed is the benchmark's business, not a test's
    assert w.dtype == np.float32 and w.shape == inst.shape
    background = inst == 0
    # many background pixels between close nuclei get a large weight; object pixels only w_c
    assert (w[background] > 5).sum() > 100
    assert np.unique(w[~background]).size == 1
