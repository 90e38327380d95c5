import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

import unetseg
from unetseg.io import TiffTileWriter, open_image

from ..conftest import tiny_unet


def test_streaming_peak_rss_grows_with_width_not_area(tmp_path):
    # glibc's dynamic mmap threshold keeps freed band buffers in the heap; a fixed threshold makes the
    # high-water mark reflect live memory rather than allocator retention.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_ARENA_MAX": "2"}
    script = Path(__file__).with_name("stream_rss.py")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), "1024", "4096"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    small, big = (run["peak_mib"] - report["base_mib"] for run in report["runs"])
    assert all(run["ok"] for run in report["runs"])
    # 16x the pixels; band buffers scale with the width (4x). Materialising the 4096^2 probabilities alone
    # would add 128 MiB.
    assert big < 6 * max(small, 8), report
    assert big - small < 128, report


def test_streamed_tiff_equals_in_memory_prediction_and_keeps_geotags(tmp_path, rng):
    model = tiny_unet("valid", depth=2, in_channels=3)
    image = rng.integers(0, 256, (300, 270, 3), dtype=np.uint8)
    geo = [(33550, 12, 3, (0.5, 0.5, 0.0), True), (42113, 2, 0, "0", True)]
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(64, 64), compression="zlib", extratags=geo)
    source = open_image(tmp_path / "in.tif")
    assert not isinstance(source.array, np.ndarray)  # read lazily
    # GDAL_NODATA is not copied: it is written per output dtype
    assert [t[0] for t in source.geotags] == [33550] and source.nodata == 0
    with TiffTileWriter(tmp_path / "out.tif", (300, 270), np.uint8, extratags=source.geotags) as writer:
        unetseg.predict_tiled(model, source.array, tile_size=96, out=writer, amp=False)
    # the file's nodata 0 applies on the lazy path ("auto") as an explicit nodata=0 does in memory
    expected = unetseg.predict_tiled(model, image, tile_size=96, amp=False, nodata=0)
    assert (expected[(image == 0).any(axis=2)] == 255).all() and (expected != 255).any()
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages.first
        assert tif.is_bigtiff and page.is_tiled and page.tags[33550].value == (0.5, 0.5, 0.0)
        np.testing.assert_array_equal(page.asarray(), expected)


def test_tiff_writer_leaves_no_file_when_incomplete(tmp_path):
    path = tmp_path / "partial.tif"
    try:
        with TiffTileWriter(path, (100, 50), np.uint8) as writer:
            writer[0:40] = np.ones((40, 50), np.uint8)
            raise KeyError("boom")
    except KeyError:
        pass
    assert not path.exists() and not list(tmp_path.iterdir())


def test_tiff_writer_takes_bands_of_any_height_across_tile_rows(tmp_path, rng):
    # bands shorter than a tile row, straddling two or three tile rows, and empty: each tile is filled from the bands
    image = rng.integers(0, 256, (100, 70, 3), dtype=np.uint8)
    heights = [5, 0, 9, 40, 1, 16, 17, 12]
    assert sum(heights) == len(image)
    with TiffTileWriter(tmp_path / "bands.tif", image.shape, np.uint8, tile=(16, 32)) as writer:
        top = 0
        for h in heights:
            writer[top : top + h] = image[top : top + h]
            top += h
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "bands.tif"), image)
