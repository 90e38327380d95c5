"""predict_dask on a Dask LocalCluster equals predict_tiled bit for bit, on awkward sizes and chunkings."""
from __future__ import annotations

import numpy as np
import pytest

import unetseg
from unetseg.errors import UnetsegError
from unetseg.io.zarr_io import create_array
from unetseg.models.geometry import Geometry
from unetseg.scale.dask import dask_tiled
from unetseg.tiling import TileOptions, tiled
from unetseg.tiling.blocks import block_sides
from unetseg.tiling.grid import TileGrid

from ..conftest import tiny_unet

pytest.importorskip("distributed")

EXACT = dict(amp=False, batch_size=1)


@pytest.fixture
def client(dask_client):
    return dask_client


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("shape, chunk, tile", [
    ((37, 50), 256, 48),     # image smaller than one chunk
    ((100, 97), 48, 44),     # sides not multiples of the chunk, many small chunks
    ((201, 150, 2), 70, 60),  # two bands, chunk rounded to the step
])
def test_dask_equals_predict_tiled(client, tmp_path, rng, padding, shape, chunk, tile):
    channels = shape[2] if len(shape) == 3 else 1
    model = tiny_unet(padding, depth=2, in_channels=channels)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    expected = tiled(model, image, TileOptions(tile_size=tile, **EXACT))
    result = dask_tiled(model, image, tmp_path / "labels.zarr", chunk=chunk, client=client,
                        options=TileOptions(tile_size=tile, **EXACT))
    out = result.output
    grid = TileGrid.build(shape[:2], tile, Geometry.of(model))
    assert grid.num_tiles > 1 or shape[0] < 64
    assert all(c % s == 0 for c, s in zip(out.chunks, (grid.rows.step, grid.cols.step), strict=True))
    np.testing.assert_array_equal(out[:], expected.output)
    np.testing.assert_array_equal(result.class_counts, expected.class_counts)
    assert result.class_counts.tolist() == np.bincount(expected.output.ravel(), minlength=3).tolist()
    assert result.pixels == expected.pixels == shape[0] * shape[1]


@pytest.mark.parametrize("classes", [3, 300])
def test_dask_with_nodata_equals_predict_tiled_whatever_the_class_count(client, tmp_path, rng, classes):
    """Invalid pixels get the nodata label at the same places on both paths (a Dask block's tiles read their
    context from its window), in a map wide enough for it (65535 with 300 classes: uint16 on both paths)."""
    model = tiny_unet("same", depth=2, num_classes=classes)
    image = rng.normal(0, 1, (90, 77)).astype(np.float32)
    image[:20, :30] = -5.0
    image[50, 60] = np.nan
    options = TileOptions(tile_size=32, nodata=-5.0, **EXACT)
    expected = tiled(model, image, options)
    result = dask_tiled(model, image, tmp_path / "labels.zarr", chunk=32, client=client, options=options)
    label = 255 if classes == 3 else 65535
    assert result.output.dtype == expected.output.dtype == (np.uint8 if classes == 3 else np.uint16)
    np.testing.assert_array_equal(result.output[:], expected.output)
    assert (expected.output == label).sum() == 20 * 30 + 1 == result.invalid_pixels == expected.invalid_pixels
    np.testing.assert_array_equal(result.class_counts, expected.class_counts)


def test_dask_probs_from_a_checkpoint_into_a_given_zarr(client, tmp_path, rng):
    model = tiny_unet("same", depth=2)
    ckpt = tmp_path / "m.pt"
    unetseg.save_checkpoint(model, ckpt)
    image = rng.integers(0, 256, (90, 70), dtype=np.uint8)
    expected = unetseg.predict_tiled(unetseg.load_model(ckpt), image, tile_size=32, output="probs", **EXACT)
    grid = TileGrid.build(image.shape, 32, Geometry.of(model))
    out = create_array(tmp_path / "probs.zarr", expected.shape, np.float32, block_sides(grid, 40))
    unetseg.predict_dask(ckpt, image, out, client=client, tile_size=32, output="probs", **EXACT)
    np.testing.assert_array_equal(out[:], expected)


def test_dask_without_a_client_uses_local_threads(tmp_path, rng):
    model = tiny_unet("valid", depth=2)
    image = rng.integers(0, 256, (75, 66), dtype=np.uint8)
    out = unetseg.predict_dask(model, image, tmp_path / "l.zarr", chunk=32, tile_size=48, **EXACT)
    np.testing.assert_array_equal(out[:], unetseg.predict_tiled(model, image, tile_size=48, **EXACT))


def test_dask_rejects_misaligned_chunks(tmp_path, rng):
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (90, 70), dtype=np.uint8)
    out = create_array(tmp_path / "bad.zarr", image.shape, np.uint8, (30, 30))
    with pytest.raises(UnetsegError, match="not a multiple of the tile step"):
        unetseg.predict_dask(model, image, out, tile_size=32)


@pytest.mark.parametrize("padding, shape, chunk", [("same", (97, 83), 24), ("valid", (61, 90), 40)])
def test_dask_gaussian_blend_equals_predict_tiled(client, tmp_path, rng, padding, shape, chunk):
    """Overlapping tile outputs are summed in the same order in every chunk: the same floats as one process."""
    model = tiny_unet(padding, depth=2)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    options = dict(tile_size=48, blend="gaussian", output="probs", **EXACT)
    expected = unetseg.predict_tiled(model, image, **options)
    grid = TileGrid.build(shape, 48, Geometry.of(model))
    if padding == "same":  # tile outputs overlap (halo): neighbours reach into each chunk
        assert grid.rows.out_size > grid.rows.step
    out = create_array(tmp_path / "p.zarr", expected.shape, np.float32, block_sides(grid, chunk))
    unetseg.predict_dask(model, image, out, client=client, **options)
    np.testing.assert_array_equal(out[:], expected)


def test_dask_loads_the_checkpoint_once_per_process_and_reads_the_file(client, tmp_path, rng):
    import tifffile

    from unetseg.scale.dask import _load_model

    model = tiny_unet("same", depth=2)
    ckpt = tmp_path / "m.pt"
    unetseg.save_checkpoint(model, ckpt)
    image = rng.integers(0, 256, (80, 70), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(32, 32), compression="zlib")
    _load_model.cache_clear()
    out = unetseg.predict_dask(ckpt, tmp_path / "in.tif", tmp_path / "l.zarr", chunk=32, client=client,
                               tile_size=32, **EXACT)
    np.testing.assert_array_equal(out[:], unetseg.predict_tiled(model, image, tile_size=32, **EXACT))
    info = _load_model.cache_info()
    assert info.misses == 1 and info.hits >= 4  # one process (client + 2 threaded workers), one load, many tasks


def test_dask_tasks_survive_the_trip_to_worker_processes(tmp_path, rng):
    """Process workers get each task pickled: settings (TTA lambdas included), blocks and the zarr output."""
    import cloudpickle

    from unetseg.scale.dask import predict_block
    from unetseg.tiling.blocks import blocks
    from unetseg.tiling.plan import plan_tiles

    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (40, 36), dtype=np.uint8)
    plan = plan_tiles(model, image, TileOptions(tile_size=32, tta="flips", **EXACT))
    out = create_array(tmp_path / "l.zarr", image.shape, np.uint8, block_sides(plan.grid, 32))
    args = cloudpickle.loads(cloudpickle.dumps((model, image, plan, blocks(plan.grid, out.chunks), out)))
    for block in args[3]:
        predict_block(*args[:3], block, args[4])
    expected = unetseg.predict_tiled(model, image, tile_size=32, tta="flips", **EXACT)
    np.testing.assert_array_equal(out[:], expected)


def test_each_task_sets_its_engines_allocator_mode_in_its_worker_process(tmp_path, rng, monkeypatch):
    """Dask workers start with MALLOC_TRIM_THRESHOLD_=65536 (every activation page-faulted anew): each task running
    torch on the CPU raises the thresholds in its process first (run_tiles does, per run)."""
    from unetseg.scale import dask as dask_module
    from unetseg.tiling import predict
    from unetseg.tiling.blocks import blocks
    from unetseg.tiling.plan import plan_tiles

    calls = []
    monkeypatch.setattr(predict, "keep_freed_memory", lambda: calls.append(1))
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (40, 36), dtype=np.uint8)
    plan = plan_tiles(model, image, TileOptions(tile_size=32, engine="torch", **EXACT))
    out = create_array(tmp_path / "l.zarr", image.shape, np.uint8, block_sides(plan.grid, 32))
    tasks = blocks(plan.grid, out.chunks)
    for block in tasks:
        dask_module.predict_block(model, image, plan, block, out)
    assert len(calls) == len(tasks) > 1


def test_a_worker_killed_mid_run_is_replaced_and_the_labels_stay_bit_identical(tmp_path, rng):
    """Two worker processes (with nannies); once some chunks are done, one worker process is killed (SIGKILL):
    its tasks are rescheduled, chunks it had written are written again alike, and the labels equal one process."""
    import os
    import signal
    import threading
    import time

    import tifffile
    from distributed import Client

    from unetseg.scale.dask import local_cluster

    model = tiny_unet("same", depth=3)
    ckpt = unetseg.save_checkpoint(model, tmp_path / "m.pt")
    image = rng.integers(0, 256, (768, 768), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(128, 128))
    expected = unetseg.predict_tiled(model, image, tile_size=256, **EXACT)
    out_path = tmp_path / "labels.zarr"
    state = {}
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        before = set(client.run_on_scheduler(_worker_addresses))
        pids = client.run(os.getpid)
        result = {}
        run = threading.Thread(target=lambda: result.update(out=unetseg.predict_dask(
            str(ckpt), str(tmp_path / "in.tif"), str(out_path), chunk=128, client=client, tile_size=256, **EXACT)))
        run.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not state and run.is_alive():
            written = client.run_on_scheduler(_finished_predict_tasks)
            if written >= 3:
                state["written"] = written
                os.kill(sorted(pids.values())[0], signal.SIGKILL)
            time.sleep(0.005)
        run.join(timeout=300)
        client.wait_for_workers(2, timeout=120)
        after = set(client.run_on_scheduler(_worker_addresses))
    assert state and state["written"] < 36, "the worker should die while chunks are still to do"
    assert after - before, "the nanny should have started a new worker in place of the killed one"
    np.testing.assert_array_equal(result["out"][:], expected)


def _worker_addresses(dask_scheduler) -> list[str]:
    # asked of the scheduler itself: Client.scheduler_info() falls back to a cached identity without per-worker
    # entries when its fetch does not get through, which once read as no workers at all right after the restart
    return list(dask_scheduler.workers)


def _finished_predict_tasks(dask_scheduler) -> int:
    return sum(1 for key, ts in dask_scheduler.tasks.items() if "predict_block" in str(key) and ts.state == "memory")


class ProbeClient:
    """A stand-in client with two workers whose probe rates are given: what choose_local_shape sees."""

    def __init__(self, parallel: float, single: float) -> None:
        self.workers = ["tcp://a", "tcp://b"]
        self.parallel, self.single = parallel, single
        self.threads: dict[str, int] = {}
        self.retired: list[str] = []

    def scheduler_info(self):
        return {"workers": {w: {} for w in self.workers}}

    def run(self, fn, *args, workers=None):
        on = workers or self.workers
        if fn.__name__ == "probe_rate":
            rate = self.single if len(on) == 1 else self.parallel / len(on)
            return {w: rate for w in on}
        for w in on:
            self.threads[w] = args[0]
        return {w: None for w in on}

    def retire_workers(self, addresses, close_workers=True):
        self.retired += addresses
        self.workers = [w for w in self.workers if w not in addresses]


@pytest.mark.parametrize("parallel, single, kept", [(12.0, 8.0, 2), (8.5, 8.0, 1)])
def test_local_cluster_shape_is_chosen_by_measurement(parallel, single, kept):
    from unetseg.scale.dask import choose_local_shape

    client = ProbeClient(parallel, single)
    shape = choose_local_shape(client, cores=2)
    assert shape.workers == kept and len(client.workers) == kept
    assert all(client.threads[w] == 2 // kept for w in client.workers)  # the cores shared out again
    assert "measured" in shape.describe()
