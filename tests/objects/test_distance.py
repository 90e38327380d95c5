"""Distance-level maps: the bounded seeded watershed separates what connected components merge, and its objects
are exact across row bands, 2-D chunks, streamed bands and Dask chunks."""
import numpy as np
import pytest
import torch
import zarr
from scipy import ndimage

import unetseg
from unetseg.data.instances import InstanceLayout
from unetseg.io.scratch import ScratchArrays
from unetseg.models.meta import InstanceRecord, ObjectTuning
from unetseg.objects import ObjectStream
from unetseg.objects.separate import FLOOD_REACH, distance_rule, label_blocks, label_objects, object_rule
from unetseg.tiling.result import Band

LEVELS, BIN = 6, 2


def touching_discs(shape=(40, 60), gap=17):
    yy, xx = np.indices(shape)
    inst = np.zeros(shape, np.int32)
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    inst[((yy - 20) ** 2 + (xx - 20 - gap) ** 2 <= 100) & (inst == 0)] = 2
    return inst


def random_levels(rng, shape, n=40):
    """Distance targets of many overlapping discs, with noise: flipped levels, holes, speckle, invalid pixels."""
    inst = np.zeros(shape, np.int32)
    yy, xx = np.indices(shape)
    for i in range(1, n + 1):
        y, x, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(2, 13)
        inst[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = i
    levels = InstanceLayout(target="distance", levels=LEVELS, bin=BIN).targets(inst).astype(np.int64)
    noise = rng.random(shape)
    levels[noise < 0.08] += rng.integers(-2, 3, int((noise < 0.08).sum()))
    levels = np.clip(levels, 0, LEVELS)
    levels[noise > 0.995] = 255  # invalid pixels (the nodata label)
    return levels.astype(np.uint8)


def test_the_watershed_separates_touching_discs_that_components_merge():
    inst = touching_discs()
    levels = InstanceLayout(target="distance", levels=LEVELS, bin=BIN).targets(inst)
    assert ndimage.label(levels > 0)[1] == 1  # one blob for connected components
    ids, table = label_objects(levels, distance_rule(LEVELS, BIN, 3), LEVELS + 1)
    assert len(table) == 2
    for k in (1, 2):  # each object is one true disc, up to a pixel column where they meet
        best = np.bincount(ids[inst == k], minlength=3)[1:].max()
        assert best >= (inst == k).sum() - 12
    assert (ids > 0).sum() == (inst > 0).sum()  # the whole foreground is flooded


def test_shallow_objects_no_seed_reaches_are_objects_of_their_own():
    levels = np.zeros((20, 20), np.uint8)
    levels[2:5, 2:5] = 1  # too shallow to seed at level 3
    levels[10:18, 10:18] = 1
    levels[12:16, 12:16] = 2
    levels[13:15, 13:15] = 3
    ids, table = label_objects(levels, distance_rule(LEVELS, BIN, 3), LEVELS + 1)
    assert len(table) == 2 and sorted(table.area) == [9, 64]
    assert len(label_objects(levels, distance_rule(LEVELS, BIN, 3, min_size=10), LEVELS + 1)[1]) == 1


def test_flooding_is_bounded_by_the_rule_radius():
    levels = np.zeros((5, 40), np.uint8)
    levels[:, :] = 2
    levels[:, :2] = 3  # seeds at the left; levels 2 then 1 flood 9 px each (the level-2 pass, then the level-1 one)
    rule = distance_rule(LEVELS, BIN, 3)
    ids, _ = label_objects(levels, rule, LEVELS + 1)
    reached = ids[0] == ids[0, 0]
    assert reached[: 2 + rule.radius].all() and not reached[2 + rule.radius :].any()
    assert set(np.unique(ids)) == {1, 2}  # the unreached rest is an object of its own
    assert rule.halo == rule.radius + 1 == 2 * FLOOD_REACH * (BIN + 1) + 1


@pytest.mark.parametrize(("seed_level", "seed_height"), [(1, 0), (2, 0), (4, 0), (6, 0), (0, 1), (0, 2), (0, 4)])
@pytest.mark.parametrize("shape", [(97, 131), (41, 200)])
def test_blocks_equal_one_whole_map_pass_on_adversarial_maps(rng, shape, seed_level, seed_height):
    """Row bands (even 1 px high), awkward 2-D chunks, ties everywhere (flat levels, speckle), invalid pixels; seeds
    by level and dome seeds (whose first pass joins components across the blocks)."""
    levels = random_levels(rng, shape)
    rule = distance_rule(LEVELS, BIN, seed_level, min_size=3, seed_height=seed_height)
    prob = rng.random(shape).astype(np.float32)
    whole, table = label_objects(levels, rule, LEVELS + 1, prob)
    assert len(table) > 5
    for sides in [(1, shape[1]), (7, shape[1]), (13, 11), (shape[0], 9), (40, 40)]:
        got, other = label_blocks(levels, rule, LEVELS + 1, sides, prob)
        np.testing.assert_array_equal(got, whole)
        np.testing.assert_array_equal(other.area, table.area)
        np.testing.assert_allclose(other.mean_prob, table.mean_prob)


def test_ties_go_to_the_seed_of_smallest_raster_index_whatever_the_blocks():
    levels = np.zeros((9, 30), np.uint8)
    levels[:, :] = 1
    levels[4, 2] = levels[4, 26] = 3  # two seeds; the middle column is equally far from both
    rule = distance_rule(3, 12, 3)
    whole, table = label_objects(levels, rule, 4)
    assert len(table) == 2 and whole[4, 14] == whole[4, 2]  # the tie at column 14 goes to the left seed
    for sides in [(3, 30), (9, 5), (2, 7)]:
        np.testing.assert_array_equal(label_blocks(levels, rule, 4, sides)[0], whole)


def distance_unet(steps=15, side=96):
    """A tiny same-padding U-Net fitted briefly to the nuclei sample's distance targets."""
    from unetseg.data.samples import load_sample

    torch.manual_seed(0)
    sample = load_sample("nuclei", "train")
    image = torch.from_numpy(sample.images[0]).float().div(255)
    layout = InstanceLayout(("nucleus",), target="distance", levels=LEVELS, bin=BIN)
    target = torch.from_numpy(layout.targets(sample.instances[0]).astype(np.int64))
    model = unetseg.UNet(1, LEVELS + 1, base_channels=8, depth=3, padding="same")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = np.random.default_rng(0)
    for _ in range(steps):
        r, c = gen.integers(0, image.shape[0] - side), gen.integers(0, image.shape[1] - side)
        loss = torch.nn.functional.cross_entropy(model(image[r : r + side, c : c + side][None, None]),
                                                 target[r : r + side, c : c + side][None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.meta = model.meta.updated(classes=layout.classes(),
                                    instances=InstanceRecord((1,), 0, 2, "distance", LEVELS, BIN))
    return model


@pytest.fixture(scope="module")
def nuclei_levels():
    from unetseg.data.samples import load_sample

    model = distance_unet()
    image = load_sample("nuclei", "train").images[0][:, :301]
    return model, image, unetseg.predict_tiled(model, image, tile_size=128, amp=False)


def test_real_predictions_streamed_and_chunked_equal_one_whole_pass(tmp_path, nuclei_levels):
    model, _, labels = nuclei_levels
    rule = object_rule(model, min_size=4)
    assert rule.flood_levels == LEVELS
    whole, table = label_objects(labels, rule, LEVELS + 1)
    assert len(table) > 10
    for sides in [(1, 301), (64, 64), (100, 37)]:
        np.testing.assert_array_equal(label_blocks(labels, rule, LEVELS + 1, sides)[0], whole)
    (tmp_path / "s").mkdir()
    stream = ObjectStream(labels.shape, rule, LEVELS + 1, ScratchArrays(tmp_path / "s"))
    for top in range(0, labels.shape[0], 50):  # bands of 50 rows; blocks of 256 rows with the rule's halo
        stream.write_band(Band(top, labels[top : top + 50], None))
    stream.finish()
    streamed = np.concatenate([ids for _, ids in stream.bands()])
    np.testing.assert_array_equal(streamed, whole)


def dask_labels(tmp_path, levels, rule, chunks, client):
    """The objects (ids, table) of ``levels`` held in a zarr array of ``chunks``, labelled on Dask workers."""
    from unetseg.scale.objects import dask_objects

    source = zarr.open_array(str(tmp_path / "c.zarr"), mode="w", shape=levels.shape, chunks=chunks,
                             dtype=levels.dtype)
    source[:] = levels
    out = zarr.open_array(str(tmp_path / "o.zarr"), mode="w", shape=levels.shape, chunks=chunks, dtype="u4")
    (tmp_path / "scratch").mkdir()
    table = dask_objects(source, None, rule, LEVELS + 1, tmp_path / "scratch", out, client=client)
    return out[:], table


def test_dask_chunks_equal_one_whole_pass(tmp_path, nuclei_levels, dask_client):
    model, _, labels = nuclei_levels
    rule = object_rule(model)
    whole, table = label_objects(labels, rule, LEVELS + 1)
    ids, got = dask_labels(tmp_path, labels, rule, (96, 80), dask_client)
    np.testing.assert_array_equal(ids, whole)
    np.testing.assert_array_equal(got.area, table.area)


def test_the_rule_reads_the_tuned_post_processing_unless_overridden(nuclei_levels):
    model = nuclei_levels[0]
    assert object_rule(model).seed_level == 3 and object_rule(model).min_size == 0  # untuned defaults
    tuned = unetseg.models.meta.CheckpointMeta.from_dict(model.meta.to_dict()).updated(
        object_tuning=ObjectTuning(min_size=12, seed_level=5, ap50=0.8))
    other = torch.nn.Module()
    other.meta = tuned
    assert (object_rule(other).seed_level, object_rule(other).min_size) == (5, 12)
    assert (object_rule(other, seed_level=2, min_size=0).seed_level, object_rule(other, min_size=0).min_size) == (2, 0)


def test_tta_averages_the_level_probabilities_before_the_watershed(tmp_path, nuclei_levels):
    """``--tta flips``: the level map the watershed floods is the argmax of the flips' mean level probabilities,
    and the streamed objects are those of that map."""
    import tifffile

    from unetseg.outputs import predict_file
    from unetseg.outputs.objects import ObjectOptions
    from unetseg.tiling import TileOptions

    model, image, plain = nuclei_levels
    image = image[:160, :120]
    kw = {"tile_size": 128, "amp": False, "halo": "exact"}
    mean = np.zeros((*image.shape, LEVELS + 1), np.float64)
    for axes in [(), (0,), (1,), (0, 1)]:
        flipped = np.ascontiguousarray(np.flip(image, axes)) if axes else image
        mean += np.flip(unetseg.predict_tiled(model, flipped, output="probs", **kw), axes) if axes else \
            unetseg.predict_tiled(model, flipped, output="probs", **kw)
    averaged = unetseg.predict_tiled(model, image, tta="flips", **kw)
    assert (averaged == mean.argmax(-1)).mean() > 0.999  # float summation order aside
    assert (averaged != plain[:160, :120]).any()  # TTA changed the map
    tifffile.imwrite(tmp_path / "n.tif", image)
    written = predict_file(model, tmp_path / "n.tif", tmp_path / "o" / "n", ["instances"],
                           options=TileOptions(tile_size=128, amp=False, halo="exact", tta="flips"),
                           objects=ObjectOptions(min_size=3))
    np.testing.assert_array_equal(tifffile.imread(written[0]), label_objects(averaged, object_rule(model, min_size=3),
                                                                             LEVELS + 1)[0])


def test_an_objects_probability_is_that_of_any_level(rng):
    from unetseg.objects.stream import object_probability

    probs = rng.dirichlet(np.ones(LEVELS + 1), (6, 7)).astype(np.float32)
    labels = probs.argmax(-1).astype(np.uint8)
    labels[0, 0] = 255  # invalid
    got = object_probability(distance_rule(LEVELS, BIN, 3), labels, probs)
    expected = 1 - probs[..., 0]
    expected[0, 0] = 0
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_predictions_take_the_tuned_tta_unless_overridden(tmp_path, nuclei_levels):
    """tta="auto" (the default) is the TTA training chose for the objects, kept in the checkpoint; an explicit
    tta wins; a model without that choice runs without TTA; the summary records the TTA that ran."""
    import copy
    import json

    import tifffile

    from unetseg.outputs import predict_file
    from unetseg.tiling import TileOptions

    model, image, _ = nuclei_levels
    image = image[:160, :120]
    kw = {"tile_size": 128, "amp": False, "halo": "exact"}
    plain = unetseg.predict_tiled(model, image, tta=None, **kw)
    np.testing.assert_array_equal(unetseg.predict_tiled(model, image, **kw), plain)  # untuned: no TTA
    tuned = copy.deepcopy(model)
    tuned.meta = tuned.meta.updated(object_tuning=ObjectTuning(min_size=3, seed_level=3, tta="flips", ap50=0.9))
    stored = unetseg.save_checkpoint(tuned, tmp_path / "tuned.pt")
    tuned = unetseg.load_model(stored)
    assert tuned.meta.object_tuning.tta == "flips"
    flips = unetseg.predict_tiled(model, image, tta="flips", **kw)
    assert (flips != plain).any()
    np.testing.assert_array_equal(unetseg.predict_tiled(tuned, image, **kw), flips)
    np.testing.assert_array_equal(unetseg.predict_tiled(tuned, image, tta=None, **kw), plain)
    tifffile.imwrite(tmp_path / "n.tif", image)
    predict_file(tuned, tmp_path / "n.tif", tmp_path / "o" / "n", ["index", "summary"],
                 options=TileOptions(tile_size=128, amp=False, halo="exact"))
    assert json.loads((tmp_path / "o" / "n_summary.json").read_text())["tta"] == "flips"
    with pytest.raises(ValueError, match="object_tuning.tta"):
        unetseg.models.meta.CheckpointMeta.from_dict({"object_tuning": {"min_size": 3, "tta": "rot45"}})


def test_tuning_keeps_tta_only_where_it_scores_higher(nuclei_levels):
    """choose_post_processing predicts the maps without TTA, then with flips, and keeps flips only for a higher
    AP@0.5 (then AP@0.75); a tie keeps no TTA; past the deadline flips is not predicted at all."""
    from unetseg.objects.tune import choose_post_processing

    record = nuclei_levels[0].meta.instances
    inst = touching_discs()
    true_levels = InstanceLayout(target="distance", levels=LEVELS, bin=BIN).targets(inst).astype(np.uint8)
    merged = np.where(inst > 0, 1, 0).astype(np.uint8)  # level 1 only: the touching discs flood as one object
    rule = object_rule(nuclei_levels[0], min_size=0)
    asked: list = []

    def predict(maps):
        def run(tta):
            asked.append(tta)
            return [maps[tta]]
        return run

    better = choose_post_processing(predict({None: merged, "flips": true_levels}), [inst], record, rule, LEVELS + 1)
    assert better.tta == "flips" and better.ap50 == 1.0 and better.default_ap50 < 1.0 and asked == [None, "flips"]
    asked.clear()
    tie = choose_post_processing(predict({None: true_levels, "flips": true_levels}), [inst], record, rule,
                                 LEVELS + 1)
    assert tie.tta is None and tie.ap50 == 1.0 and asked == [None, "flips"]
    asked.clear()
    late = choose_post_processing(predict({None: merged, "flips": true_levels}), [inst], record, rule, LEVELS + 1,
                                  deadline=0.0, clock=lambda: 1.0)
    assert late.tta is None and asked == [None]
