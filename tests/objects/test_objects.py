"""Objects from class maps: the rule's semantics, and exactness across row bands and Dask-style chunks."""
import numpy as np
import pytest

from unetseg.models.meta import InstanceRecord
from unetseg.objects.separate import ObjectRule, class_region_rule, label_blocks, label_objects, object_rule

from ..conftest import tiny_unet


def discs(rng, shape, n, radius=(3, 14), classes=2):
    """A class map of overlapping discs of random classes 1..classes-1 (touching and nested objects)."""
    out = np.zeros(shape, np.uint8)
    yy, xx = np.indices(shape)
    for _ in range(n):
        y, x, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(*radius)
        out[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = rng.integers(1, classes)
    return out


def instance_classes(rng, shape, n):
    """An instance model's class map: interior 1, a 1-px boundary 2 around each of n touching discs."""
    inst = np.zeros(shape, np.int32)
    yy, xx = np.indices(shape)
    for i in range(1, n + 1):
        y, x, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(4, 12)
        inst[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = i
    classes = (inst > 0).astype(np.uint8)
    pad = np.pad(inst, 1, mode="edge")
    rim = np.zeros(shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        rim |= pad[dy : dy + shape[0], dx : dx + shape[1]] != inst
    classes[rim & (inst > 0)] = 2
    return classes


CASES = [
    ("instances", lambda rng, shape: instance_classes(rng, shape, 30), ObjectRule((1,), 2, 3, min_size=8)),
    ("classes", lambda rng, shape: discs(rng, shape, 40, classes=3), ObjectRule((1, 2), min_size=5)),
    ("split", lambda rng, shape: discs(rng, shape, 40, classes=3), ObjectRule((1, 2), split=2)),
    ("regions", lambda rng, shape: discs(rng, shape, 30, classes=3), class_region_rule(3)),
]


@pytest.mark.parametrize("name, make, rule", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("shape", [(97, 131), (41, 200), (150, 33)])
def test_blocks_equal_one_whole_map_pass(rng, name, make, rule, shape):
    """Row bands (even 1 px high) and 2-D chunks of awkward sizes, invalid pixels included: the same objects,
    numbered alike (raster order), with the same table."""
    classes = make(rng, shape)
    classes[rng.random(shape) < 0.005] = 255  # invalid pixels (the nodata label)
    prob = rng.random(shape).astype(np.float32)
    whole, table = label_objects(classes, rule, 3, prob)
    assert whole.max() == len(table) > 3
    for sides in [(1, shape[1]), (7, shape[1]), (13, 11), (shape[0], 9), (40, 40)]:
        got, other = label_blocks(classes, rule, 3, sides, prob)
        np.testing.assert_array_equal(got, whole)
        np.testing.assert_array_equal(other.area, table.area)
        np.testing.assert_allclose(other.mean_prob, table.mean_prob)
        np.testing.assert_array_equal(other.touches_edge, table.touches_edge)


def test_ids_follow_raster_order_and_the_table_describes_them(rng):
    classes = discs(rng, (80, 90), 25)
    ids, table = label_objects(classes, ObjectRule((1,), fill_holes=False), 2)
    first = [np.flatnonzero(ids.ravel() == i)[0] for i in range(1, len(table) + 1)]
    assert first == sorted(first)
    for i in range(1, len(table) + 1):
        rows, cols = np.nonzero(ids == i)
        assert table.area[i - 1] == len(rows)
        assert (table.min_row[i - 1], table.max_row[i - 1]) == (rows.min(), rows.max())
        assert table.centroid_col[i - 1] == pytest.approx(cols.mean())
    assert table.area.sum() == (classes == 1).sum()  # components of the class: areas add up to its pixels


def test_holes_are_filled_small_objects_dropped_and_edges_flagged():
    classes = np.zeros((30, 40), np.uint8)
    classes[5:20, 5:20] = 1
    classes[10:13, 10:13] = 0  # a hole
    classes[0:3, 30:33] = 1    # a small object at the edge
    ids, table = label_objects(classes, ObjectRule((1,), min_size=10), 2)
    assert len(table) == 1 and (ids[10:13, 10:13] == 1).all() and table.area[0] == 225
    assert not table.touches_edge[0] and (ids[0:3, 30:33] == 0).all()
    ids, table = label_objects(classes, ObjectRule((1,), fill_holes=False), 2)
    assert len(table) == 2 and (ids[10:13, 10:13] == 0).all() and table.touches_edge.tolist() == [True, False]
    classes[11, 11] = 255  # an invalid pixel inside: the hole is not filled (nothing is known there)
    ids, _ = label_objects(classes, ObjectRule((1,)), 2)
    assert (ids[10:13, 10:13] == 0).all()


def test_the_boundary_grows_onto_the_nearest_interior_and_separates_touching_objects():
    classes = np.zeros((12, 20), np.uint8)
    classes[2:10, 2:18] = 2            # one blob of boundary ...
    classes[4:8, 4:8] = 1              # ... around two interiors
    classes[4:8, 12:16] = 1
    ids, table = label_objects(classes, ObjectRule((1,), 2, 3), 3)
    assert len(table) == 2 and table.area.tolist() == [8 * 8, 8 * 8]
    assert (ids[:, :10][classes[:, :10] > 0] == 1).all() and (ids[:, 10:][classes[:, 10:] > 0] == 2).all()
    lonely = np.zeros((10, 10), np.uint8)
    lonely[2:5, 2:5] = 2  # boundary with no interior near: no object
    assert label_objects(lonely, ObjectRule((1,), 2, 3), 3)[0].max() == 0


def test_split_cuts_touching_blobs_at_their_neck():
    classes = np.zeros((30, 50), np.uint8)
    yy, xx = np.indices(classes.shape)
    classes[(yy - 15) ** 2 + (xx - 14) ** 2 <= 100] = 1
    classes[(yy - 15) ** 2 + (xx - 34) ** 2 <= 100] = 1  # two discs touching along a short neck
    assert label_objects(classes, ObjectRule((1,)), 2)[0].max() == 1
    ids, table = label_objects(classes, ObjectRule((1,), split=3), 2)
    assert len(table) == 2 and table.area.sum() == (classes == 1).sum()


def test_rule_of_an_instance_model_and_of_a_plain_one():
    model = tiny_unet("same", depth=2, num_classes=3)
    assert object_rule(model) == ObjectRule((1, 2))
    assert object_rule(model, background=None, split=2).seed_classes == (0, 1, 2)
    model.meta = model.meta.updated(instances=InstanceRecord((1,), 2, 2))
    assert object_rule(model, min_size=4) == ObjectRule((1,), 2, 5, min_size=4)
    with pytest.raises(ValueError, match="split"):
        object_rule(model, split=2)
