import math

import numpy as np
import pytest
import torch

from unetseg.metrics import ConfusionMatrix


def test_hand_computed_example():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 0]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    s = cm.compute()
    # class 0: TP 2, FP 1, FN 1; class 1: TP 2, FP 1, FN 0; class 2: TP 2, FP 0, FN 1
    assert s["iou"] == pytest.approx([2 / 4, 2 / 3, 2 / 3])
    assert s["dice"] == pytest.approx([4 / 6, 4 / 5, 4 / 5])
    assert s["miou"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["pixels"] == 8


def test_ignore_label_is_skipped_and_absent_classes_are_nan():
    target = np.array([0, 0, 255, 255, 1])
    pred = np.array([0, 1, 2, 1, 1])  # prediction under the ignore label does not count
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, target)
    s = cm.compute()
    assert s["pixels"] == 3
    assert s["iou"][:2] == pytest.approx([1 / 2, 1 / 2])
    assert math.isnan(s["iou"][2])  # class 2 neither true nor predicted outside ignored pixels
    assert s["miou"] == pytest.approx(0.5)


def test_accumulating_over_batches_differs_from_mean_of_batch_scores():
    # batch A: a big object well segmented; batch B: a tiny object missed by one pixel
    cm = ConfusionMatrix(2)
    per_batch = []
    for target, pred in (
        (np.array([1] * 90 + [0] * 10), np.array([1] * 90 + [0] * 10)),
        (np.array([1] * 2 + [0] * 98), np.array([1] * 1 + [0] * 99)),
    ):
        cm.update(pred, target)
        one = ConfusionMatrix(2)
        one.update(pred, target)
        per_batch.append(one.compute()["iou"][1])
    accumulated = cm.compute()["iou"][1]
    assert accumulated == pytest.approx(91 / 92)
    assert np.mean(per_batch) == pytest.approx((1.0 + 0.5) / 2)
    assert abs(accumulated - np.mean(per_batch)) > 0.2


def test_bad_labels_and_shapes_raise():
    cm = ConfusionMatrix(2, ignore_index=255)
    with pytest.raises(ValueError, match="label 3"):
        cm.update(np.array([0, 1]), np.array([3, 1]))
    with pytest.raises(ValueError, match="pixels"):
        cm.update(np.array([0, 1, 1]), np.array([0, 1]))


def test_reduce_is_noop_without_process_group():
    cm = ConfusionMatrix(2)
    cm.update(np.array([1]), np.array([1]))
    assert cm.reduce_().matrix.tolist() == [[0, 0], [0, 1]]


def test_object_scores_match_one_to_one_at_each_threshold():
    import numpy as np

    from unetseg.metrics import ObjectScores

    true = np.zeros((10, 10), int)
    true[1:4, 1:4], true[6:9, 6:9] = 1, 2
    pred = np.zeros((10, 10), int)
    pred[1:4, 1:4], pred[6:8, 6:9], pred[0, 9] = 5, 7, 3  # exact, IoU 6/9, a false positive
    scores = ObjectScores((0.5, 0.75))
    scores.update(true, pred)
    found = scores.compute()
    assert found["ap"] == {0.5: 2 / 3, 0.75: 1 / 4}  # TP / (TP + FP + FN)
    assert found["sq"] == (1 + 6 / 9) / 2 and found["rq"] == 2 / 2.5 and found["pq"] == found["sq"] * found["rq"]
    assert found["n_true"] == 2 and found["n_pred"] == 3 and found["count_error"] == 0.5
    scores.update(true, np.zeros_like(true))  # a second image: nothing found there
    assert scores.compute()["ap"][0.5] == 2 / (4 + 3 - 2)


def test_unscored_truth_is_no_object_and_predictions_mostly_on_it_are_no_false_ones():
    import numpy as np

    from unetseg.metrics import ObjectScores

    true = np.zeros((10, 10), int)
    true[1:4, 1:4], true[6:10, 0:2] = 1, 2  # object 2: a sliver a block edge cut off its object
    off = true == 2
    pred = np.zeros((10, 10), int)
    pred[1:4, 1:4], pred[6:10, 0:2] = 5, 6  # finds both
    pred[0, 8:10] = 7  # a false positive away from the sliver
    pred[5:7, 5:9] = 8  # 8 px, 1 of them on the sliver: mostly off it, stays false
    pred[6, 1] = 8
    scores, plain = ObjectScores(), ObjectScores()
    scores.update(true, pred, off)
    plain.update(true, pred)
    found = scores.compute()
    assert found["n_true"] == 1 and found["n_pred"] == 3  # objects 5, 7 and 8; 6 lies wholly on the sliver
    assert found["ap"][0.5] == 1 / 3 and plain.compute()["ap"][0.5] == 2 / 4  # the sliver found, 7 and 8 false
    missed = ObjectScores()
    missed.update(true, np.where(pred == 6, 0, pred), off)  # not finding the sliver costs nothing
    assert missed.compute()["ap"][0.5] == 1 / 3
    with pytest.raises(ValueError, match="unscored mask has 4 pixels"):
        scores.update(true, pred, np.zeros((2, 2), bool))


def _random_instances(rng, n_objects: int):
    import numpy as np

    out = np.zeros((24, 24), int)
    for k in range(1, n_objects + 1):
        r, c = rng.integers(0, 20, 2)
        out[r : r + rng.integers(2, 5), c : c + rng.integers(2, 5)] = k
    return out


def test_object_scores_pool_by_counts_as_if_scored_together():
    import json

    import numpy as np

    from unetseg.metrics import ObjectScores

    rng = np.random.default_rng(4)
    pairs = [(_random_instances(rng, 6), _random_instances(rng, 5)) for _ in range(4)]
    together, first, second = ObjectScores(), ObjectScores(), ObjectScores()
    for i, (true, pred) in enumerate(pairs):
        together.update(true, pred)
        (first if i < 2 else second).update(true, pred)
    pooled = first.merge(second).compute()
    assert pooled == together.compute() and pooled["n_true"] == first.n_true + second.n_true
    restored = ObjectScores.from_counts(json.loads(json.dumps(first.counts())))  # through cv.json and back
    assert restored.compute() == first.compute()
    with pytest.raises(ValueError, match="do not pool"):
        first.merge(ObjectScores((0.5,)))


def test_spread_of_fold_scores_skips_folds_without_a_score():
    import math

    from unetseg.metrics import spread_of

    found = spread_of([0.8, math.nan, 0.6, 0.7])
    assert found["mean"] == pytest.approx(0.7) and found["spread"] == pytest.approx(0.2)
    assert (found["min"], found["max"], found["n"]) == (0.6, 0.8, 3)
    assert spread_of([math.nan])["n"] == 0 and math.isnan(spread_of([])["mean"])
