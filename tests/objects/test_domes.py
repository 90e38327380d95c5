"""Dome seeds (h-maxima) of distance-level maps: the definition, and objects seeded by them exact across row
bands, 2-D chunks, streamed bands and Dask chunks although the seeds are a property of whole components."""
import numpy as np
import pytest
import torch
from scipy import ndimage

import unetseg
from unetseg.io.scratch import ScratchArrays
from unetseg.models.meta import CheckpointMeta, InstanceRecord
from unetseg.objects import ObjectStream
from unetseg.objects.domes import DomeMerger, dome_block, dome_markers, dome_seeds
from unetseg.objects.separate import (
    FLOOD_REACH,
    blocks_of,
    distance_rule,
    label_block,
    label_objects,
    object_rule,
)
from unetseg.objects.tune import tune_post_processing
from unetseg.tiling.result import Band

from .test_distance import BIN, LEVELS, dask_labels, random_levels

EIGHT = np.ones((3, 3), bool)


def brute_force_seeds(levels, height, num_classes):
    """Pixel by pixel: level p is the highest of its component of {level >= max(p - height + 1, 1)}."""
    valid = (levels >= 1) & (levels < num_classes)
    out = np.zeros(levels.shape, bool)
    for r, c in zip(*np.nonzero(valid), strict=True):
        p = int(levels[r, c])
        found, _ = ndimage.label(valid & (levels >= max(p - height + 1, 1)), EIGHT)
        out[r, c] = levels[found == found[r, c]].max() == p
    return out


@pytest.mark.parametrize("height", [1, 2, 3, 6])
def test_dome_seeds_are_the_tops_of_domes_at_least_h_levels_high(rng, height):
    levels = random_levels(rng, (37, 41), n=12)
    np.testing.assert_array_equal(dome_markers(levels, height, LEVELS + 1), brute_force_seeds(levels, height,
                                                                                              LEVELS + 1))


def test_a_bump_lower_than_h_is_no_seed_and_a_dome_h_high_is():
    levels = np.zeros((7, 21), np.uint8)
    levels[1:6, 1:20] = 1
    levels[2:5, 2:9] = 2
    levels[3, 4] = 4         # a dome 3 levels above the saddle (level 1) to the other one
    levels[2:5, 12:19] = 2
    levels[3, 15] = 3        # a dome 2 levels above it: only the highest of the two
    assert dome_markers(levels, 3, 5).sum() == 1 and dome_markers(levels, 3, 5)[3, 4]
    both = dome_markers(levels, 2, 5)
    assert both[3, 4] and both[3, 15] and both.sum() == 2
    assert len(label_objects(levels, distance_rule(4, 20, 0, seed_height=2), 5)[1]) == 2
    assert len(label_objects(levels, distance_rule(4, 20, 0, seed_height=3), 5)[1]) == 1


def cones(shape=(40, 120), discs=((20, 20, 14), (20, 38, 6), (20, 80, 14), (20, 96, 14)), slope=2):
    """A predicted-like distance map (a level per ``slope`` px inwards, at most LEVELS) of discs (row, col, radius)
    and its true objects (each pixel to the disc whose cone is highest there): a big and a small disc touching
    at level 1, and two big ones whose contact is blurred up to level 3."""
    yy, xx = np.indices(shape)
    best, inst = np.full(shape, -np.inf), np.zeros(shape, np.int32)
    for k, (y, x, r) in enumerate(discs, 1):
        v = (r - np.hypot(yy - y, xx - x)) / slope
        inst[v > best] = k
        best = np.maximum(best, v)
    levels = np.clip(np.ceil(best), 0, LEVELS).astype(np.uint8)
    inst[levels == 0] = 0
    return levels, inst


FAR = 2  # the rules' bin: each level floods 9 px, so a disc without a seed is taken by its neighbour


def test_dome_seeds_split_touching_objects_that_no_single_seed_level_does():
    """The small disc needs a seed level <= 3 (its top), the blurred pair >= 4 (their saddle): no level gives
    four objects; domes at least 1 or 2 levels high do, each object one true disc."""
    levels, inst = cones()
    for lv in range(1, LEVELS + 1):
        ids = label_objects(levels, distance_rule(LEVELS, FAR, lv), LEVELS + 1)[0]
        assert len(np.unique(ids[inst > 0])) != 4 or (ids[inst == 2] == ids[20, 20]).any()
    for height in (1, 2):
        ids, table = label_objects(levels, distance_rule(LEVELS, FAR, 0, seed_height=height), LEVELS + 1)
        assert len(table) == 4
        for k in range(1, 5):
            assert np.bincount(ids[inst == k]).max() >= 0.9 * (inst == k).sum()


def test_the_merger_joins_components_across_blocks_as_one_whole_pass():
    """A spiral ridge whose top is far from most of it, cut into many blocks: each block alone cannot know."""
    levels = np.zeros((30, 30), np.uint8)
    levels[2:28, 2] = levels[2, 2:28] = levels[2:28, 27] = levels[27, 5:28] = levels[5:28, 5] = 1
    levels[5, 5:24] = levels[5:24, 24] = 1
    levels[23, 24] = 3  # the top, at the spiral's inner end
    levels[10, 2] = 2   # a bump too low to be a dome of height 2
    whole = dome_markers(levels, 2, 4)
    assert whole.sum() == 1 and whole[23, 24]
    for sides in [(1, 30), (4, 4), (7, 30), (30, 3), (11, 13)]:
        shape = levels.shape
        merger = DomeMerger(shape, 2, 4)
        cores = blocks_of(shape, sides)
        for a, b, c, d in cores:
            merger.add(dome_block(levels[a:b, c:d], (a, c), shape, 2, 4))
        merger.finish()
        got = np.zeros(shape, bool)
        for n, (a, b, c, d) in enumerate(cores):
            got[a:b, c:d] = dome_seeds(levels[a:b, c:d], merger.verdicts(n), 2, 4)
        np.testing.assert_array_equal(got, whole)


def test_streamed_bands_and_dask_chunks_equal_one_whole_pass(tmp_path, rng, dask_client, monkeypatch):
    import unetseg.objects.stream as stream_module
    monkeypatch.setattr(stream_module, "CORE_ROWS", 7)  # many blocks of rows, each shorter than the halo
    levels = random_levels(rng, (150, 170))
    rule = distance_rule(LEVELS, BIN, 0, min_size=2, seed_height=2)
    assert rule.halo > 7
    prob = rng.random(levels.shape).astype(np.float32)
    whole, table = label_objects(levels, rule, LEVELS + 1, prob[..., None].repeat(LEVELS + 1, -1).max(-1))
    (tmp_path / "s").mkdir()
    stream = ObjectStream(levels.shape, rule, LEVELS + 1, ScratchArrays(tmp_path / "s"), probabilities=True, plane=0)
    for top in range(0, levels.shape[0], 31):
        stream.write_band(Band(top, levels[top : top + 31], prob[top : top + 31, :, None]))
    streamed_table = stream.finish()
    np.testing.assert_array_equal(np.concatenate([ids for _, ids in stream.bands()]), whole)
    np.testing.assert_allclose(streamed_table.mean_prob, table.mean_prob)

    ids, got = dask_labels(tmp_path, levels, rule, (40, 33), dask_client)
    np.testing.assert_array_equal(ids, whole)
    np.testing.assert_array_equal(got.area, table.area)


def test_a_dome_rule_without_markers_is_refused_and_heights_are_checked():
    levels = np.ones((5, 5), np.uint8)
    rule = distance_rule(LEVELS, BIN, 0, seed_height=2)
    with pytest.raises(ValueError, match="needs the window's markers"):
        label_block(levels, (0, 0), (slice(0, 5), slice(0, 5)), (5, 5), rule, LEVELS + 1)
    with pytest.raises(ValueError, match="seed height 7"):
        distance_rule(LEVELS, BIN, 0, seed_height=7)
    assert rule.radius == FLOOD_REACH * (BIN + 1) * (LEVELS - 1)  # dome seeds: the flood opens every level below K


def test_tuning_chooses_dome_seeds_where_they_score_better_and_the_rule_reads_them():
    levels, inst = cones()
    record = InstanceRecord((1,), 0, 2, "distance", LEVELS, FAR)
    tuned, tried = tune_post_processing([levels], [inst], record, distance_rule(LEVELS, FAR, 3), LEVELS + 1)
    assert {c.seed_height for c in tried} == {None, 1, 2, 3, 4, 5}
    assert tuned.seed_height in (1, 2) and tuned.seed_level is None and tuned.ap50 == 1.0
    assert max(c.ap50 for c in tried if c.seed_height is None) < 1.0

    model = torch.nn.Module()
    model.num_classes = LEVELS + 1
    model.meta = CheckpointMeta.from_dict(unetseg.UNet(1, LEVELS + 1).meta.updated(
        instances=record, object_tuning=tuned).to_dict())  # through the checkpoint's dict
    assert model.meta.object_tuning.seed_height == tuned.seed_height
    rule = object_rule(model)
    assert rule.seed_height == tuned.seed_height and rule.seed_level == 0
    assert object_rule(model, seed_level=2).seed_height == 0  # an explicit seed level overrides
    assert len(label_objects(levels, rule, LEVELS + 1)[1]) == 4
