"""The device-resident pipeline: raw tiles go to the device in the image's dtype and are normalised, run, cropped and
counted there; on the CPU it gives exactly what the host pipeline (numpy windows, numpy normalisation, the graph,
softmax) gives, bit for bit in fp32, and its threads are gone when it stops."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import unetseg
from unetseg.data.labels import label_counts
from unetseg.data.nodata import invalid_pixels, valid_mask
from unetseg.data.normalization import Normalization
from unetseg.engines.contract import ForwardSpec
from unetseg.engines.graph import inference_graph
from unetseg.models.geometry import Geometry
from unetseg.models.precision import resolve_precision
from unetseg.tiling import TileOptions, tiled
from unetseg.tiling.forward import TileForward, normalise
from unetseg.tiling.grid import TileGrid
from unetseg.tiling.padding import gather_window
from unetseg.tiling.splitter import travel_dtype

from ..conftest import tiny_unet

CPU = torch.device("cpu")


def images(rng) -> dict[str, np.ndarray]:
    return {
        "uint8": rng.integers(0, 256, (70, 90, 3), dtype=np.uint8),
        "uint16": rng.integers(0, 65536, (70, 90, 3), dtype=np.uint16),
        "int16": rng.integers(-3000, 3000, (70, 90, 3), dtype=np.int16),
        "float32": rng.normal(0, 50, (70, 90, 3)).astype(np.float32),
        "float64": rng.normal(0, 50, (70, 90, 3)),
    }


@pytest.mark.parametrize("kind", ["uint8", "uint16", "int16", "float32", "float64"])
@pytest.mark.parametrize("norm", [Normalization(), Normalization((0.1, 0.2, 0.3), (0.5, 1.5, 2.0)),
                                  Normalization((3.0,), (7.0,), scale=1000.0)])
def test_device_normalisation_is_the_hosts_bit_for_bit(rng, kind, norm):
    image = images(rng)[kind]
    spec = ForwardSpec.of(norm, image.dtype, travel_dtype(image.dtype), 3)
    tiles = torch.from_numpy(np.ascontiguousarray(image, travel_dtype(image.dtype)))[None]
    got = normalise(tiles, spec, None).permute(0, 2, 3, 1)[0].numpy()
    np.testing.assert_array_equal(got, norm.apply(image))


@pytest.mark.parametrize("nodata, rule", [(0, "any"), (0, "all"), (None, "any"), (-5.0, "any"), (float("nan"), "all")])
def test_invalid_pixels_on_tensors_follow_the_one_rule(rng, nodata, rule):
    for kind, image in images(rng).items():
        image = image.copy()
        image[3:9, 4:7] = 0 if kind != "float64" else -5.0
        image[20, 30, 1] = 0
        if image.dtype.kind == "f":
            image[5, 50, 2], image[6, 51] = np.nan, np.inf
            image[7, 52, 0] = -5.0
        want = ~valid_mask(image, nodata, rule)
        got = invalid_pixels(torch.from_numpy(image)[None], nodata, rule)[0].numpy()
        np.testing.assert_array_equal(got, want, err_msg=kind)


def host_pipeline(model, image: np.ndarray, tile: int, norm: Normalization, nodata=None) -> np.ndarray:
    """The tiled prediction computed on the host, as unetseg did before its device pipeline: each tile's window
    gathered with numpy, normalised with numpy, invalid pixels zeroed, through the fp32 inference graph, softmax,
    kept centres stitched. HxWxK float32."""
    grid = TileGrid.build(image.shape[:2], tile, Geometry.of(model), "exact")
    graph = inference_graph(model, CPU, resolve_precision(False, CPU))
    rows, cols = grid.rows, grid.cols
    out = np.zeros((*image.shape[:2], model.num_classes), np.float32)
    for i in range(rows.count):
        for j in range(cols.count):
            r0, c0 = rows.input_start(i), cols.input_start(j)
            window = gather_window(image, (r0, r0 + rows.tile), (c0, c0 + cols.tile))
            x = norm.apply(window)
            if nodata is not None:
                x[~valid_mask(window, nodata)] = 0.0
            with torch.inference_mode():
                probs = torch.softmax(graph(torch.from_numpy(x).permute(2, 0, 1)[None]), 1)[0].permute(1, 2, 0)
            (a, b), (c, d) = rows.kept(i), cols.kept(j)
            pa, pc = a - rows.output_range(i)[0], c - cols.output_range(j)[0]
            out[a:b, c:d] = probs[pa : pa + b - a, pc : pc + d - c].numpy()
    return out


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kind", ["uint8", "uint16", "float32"])
def test_device_pipeline_equals_the_host_pipeline_bit_for_bit_in_fp32(rng, padding, kind):
    image = images(rng)[kind]
    model = tiny_unet(padding, depth=2, in_channels=3)
    norm = Normalization((0.4, 0.5, 0.6), (0.2, 0.3, 0.25)) if kind != "float32" else Normalization()
    want = host_pipeline(model, image, 48, norm)
    options = dict(tile_size=48, halo="exact", amp=False, engine="torch", normalization=norm)
    result = tiled(model, image, TileOptions(output="probs", **options))
    assert result.report.num_tiles > 2
    np.testing.assert_array_equal(result.output, want)
    labels = tiled(model, image, TileOptions(**options))
    top2 = np.sort(want, -1)[..., -2:]
    decided = top2[..., 1] > top2[..., 0]  # labels come from the logits: an exact tie in float32 may go either way
    np.testing.assert_array_equal(labels.output[decided], want.argmax(-1)[decided])
    np.testing.assert_array_equal(labels.class_counts, label_counts(labels.output, 3))


def test_device_pipeline_with_invalid_pixels_equals_the_host_pipeline(rng):
    image = rng.normal(0, 1, (60, 75, 3)).astype(np.float32)
    image[10:20, 5:30] = -5
    image[40, 41, 2] = np.nan
    model = tiny_unet("same", depth=2, in_channels=3)
    norm = Normalization((0.1, 0.0, -0.1), (1.0, 2.0, 0.5))
    want = host_pipeline(model, image, 48, norm, nodata=-5.0)
    invalid = ~valid_mask(image, -5.0)
    want[invalid] = 0
    options = dict(tile_size=48, halo="exact", amp=False, engine="torch", normalization=norm, nodata=-5.0)
    got = tiled(model, image, TileOptions(output="probs", **options))
    np.testing.assert_array_equal(got.output, want)
    labels = tiled(model, image, TileOptions(**options))
    assert (labels.output[invalid] == 255).all()
    assert labels.valid_pixels == (~invalid).sum()
    np.testing.assert_array_equal(labels.class_counts, label_counts(labels.output, 3))


def test_class_counts_on_the_device_equal_the_hosts_counts(rng):
    model = tiny_unet("same", depth=3)
    image = rng.integers(0, 256, (300, 260), dtype=np.uint8)
    on_device = tiled(model, image, TileOptions(tile_size=128, amp=False))
    on_host = tiled(model, image, TileOptions(tile_size=128, amp=False, output="probs"))
    np.testing.assert_array_equal(on_device.class_counts, label_counts(on_device.output, 3))
    np.testing.assert_array_equal(on_device.class_counts, on_host.class_counts)


def test_tiles_travel_in_the_images_dtype():
    assert travel_dtype(np.uint8) == np.uint8 and travel_dtype(np.uint16) == np.uint16
    assert travel_dtype(np.dtype(">u2")) == np.uint16  # a big-endian TIFF's pixels, in the machine's order
    assert travel_dtype(np.bool_) == np.uint8 and travel_dtype(np.uint64) == np.float32
    assert travel_dtype(np.float64) == np.float64


def test_labels_come_straight_from_one_views_logits_and_from_averaged_probabilities_under_tta(rng):
    model = tiny_unet("same", depth=2)
    graph = inference_graph(model, CPU, resolve_precision(False, CPU))
    spec = ForwardSpec.of(Normalization(), np.uint8, np.dtype(np.uint8), 1, labels=True)
    tiles = torch.from_numpy(rng.integers(0, 256, (2, 32, 32, 1), dtype=np.uint8))
    with torch.inference_mode():
        out = TileForward(graph, spec)(tiles)
        logits = graph(normalise(tiles, spec, None))
    assert out.probs is None and out.classes == 3
    np.testing.assert_array_equal(out.labels.numpy(), logits.argmax(1).numpy())
    with torch.inference_mode():
        flips = TileForward(graph, ForwardSpec.of(Normalization(), np.uint8, np.dtype(np.uint8), 1, labels=True,
                                                  tta="flips"))(tiles)
    assert flips.labels is not None and flips.labels.shape == (2, 32, 32)


def reader_and_writer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("unetseg-tile-reader", "unetseg-band-writer")]


def test_a_cancelled_run_leaves_no_reader_or_writer_thread(rng):
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (400, 300), dtype=np.uint8)

    def cancel(done: int, total: int) -> None:
        if done >= 3:
            raise KeyboardInterrupt("Cancel")

    with pytest.raises(KeyboardInterrupt):
        unetseg.predict_tiled(model, image, tile_size=64, amp=False, progress=cancel)
    assert reader_and_writer_threads() == []


def test_a_failing_writer_stops_the_run_with_its_error_and_leaves_no_thread(rng):
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (400, 300), dtype=np.uint8)

    class FailsOnSecondBand:
        shape, dtype = image.shape, np.dtype(np.uint8)

        def __init__(self) -> None:
            self.bands = 0

        def __setitem__(self, key, value):
            self.bands += 1
            if self.bands == 2:
                raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        unetseg.predict_tiled(model, image, tile_size=64, amp=False, out=FailsOnSecondBand())
    assert reader_and_writer_threads() == []


def test_a_failing_reader_stops_the_run_with_its_error(rng):
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (400, 300), dtype=np.uint8)

    class BreaksAtRow200:
        shape, dtype, ndim = image.shape, image.dtype, 2

        def __getitem__(self, key):
            if key[0].stop > 200:
                raise OSError(5, "Input/output error")
            return image[key]

    with pytest.raises(OSError, match="Input/output error"):
        unetseg.predict_tiled(model, BreaksAtRow200(), tile_size=64, amp=False)
    assert reader_and_writer_threads() == []
