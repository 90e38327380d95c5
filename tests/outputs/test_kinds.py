"""The registry of output kinds: every --format name is one entry with one writer; a new kind is one more."""
from pathlib import Path

import numpy as np
import pytest

from unetseg.errors import UnetsegError
from unetseg.io.source import ImageSource
from unetseg.outputs import KindWriter, OutputSet, OutputSpec, check_formats, output_kind, output_kinds
from unetseg.outputs import kinds as kinds_module
from unetseg.outputs.style import MapStyle
from unetseg.tiling import run_tiles
from unetseg.tiling.plan import plan_tiles

from ..conftest import tiny_unet


def test_built_in_kinds_and_what_they_need():
    assert output_kinds()[:6] == ("index", "palette", "overlay", "probs", "uncertainty", "ome-zarr")
    assert output_kind("uncertainty").needs == ("uncertainty",) and not output_kind("uncertainty").dask
    assert {output_kind(n).needs for n in ("index", "palette", "overlay", "ome-zarr")} == {("labels",)}
    assert output_kind("probs").needs == ("probs",) and output_kind("summary").needs == ("result",)
    assert output_kind("objects").needs == ("objects", "probs") and output_kind("instances").needs == ("objects",)
    assert output_kind("index").path(Path("o/a"), "stream") == Path("o/a_index.tif")
    assert output_kind("index").path(Path("o/a"), "memory") == Path("o/a_index.png")
    assert output_kind("ome-zarr").path(Path("o/a"), "memory") == Path("o/a_index.ome.zarr")


def test_unknown_formats_and_formats_dask_cannot_write_are_one_line():
    with pytest.raises(UnetsegError, match="unknown output format 'jpeg'"):
        check_formats(["index", "jpeg"])
    with pytest.raises(UnetsegError, match="--format tiff is not written for images"):
        check_formats(["index", "tiff"], dims=2)
    with pytest.raises(UnetsegError, match="--dask writes ome-zarr, summary, instances, objects, geojson, gpkg only, "
                                           "not index,probs"):
        check_formats(["index", "probs", "summary"], dask=True)


class BandCount(KindWriter):
    """A new kind for the test: a text file with the number of bands and labelled pixels it saw."""

    bands = pixels = 0

    def write_band(self, band):
        self.bands += 1
        self.pixels += band.labels.size

    def finish(self, done):
        self.path.write_text(f"{self.bands} {self.pixels} {done.result.valid_pixels}")
        return [self.path]


def test_a_new_kind_is_one_registry_entry_and_one_writer(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(kinds_module, "_KINDS", dict(kinds_module._registry()))  # registered for this test only
    kinds_module.register_output_kind("bandcount", part="bands", suffixes=(".txt", ".txt"), needs="labels")(BandCount)
    assert "bandcount" in output_kinds()
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (130, 70), dtype=np.uint8)
    plan = plan_tiles(model, image)
    source = ImageSource(tmp_path / "x.png", image)
    spec = OutputSpec(tmp_path / "x", source, model.num_classes, model.class_table, MapStyle.of(model, source, plan))
    with OutputSet(spec, ["index", "bandcount"]) as outputs:
        outputs.finish(run_tiles(model, image, plan, out=outputs))
    bands, pixels, valid = map(int, (tmp_path / "x_bands.txt").read_text().split())
    assert bands == plan.grid.rows.count and pixels == valid == 130 * 70
    assert outputs.written == [tmp_path / "x_index.png", tmp_path / "x_bands.txt"]
