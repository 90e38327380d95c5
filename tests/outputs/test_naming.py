"""Output names: one stem per input, and a folder's outputs told apart from its inputs."""
from pathlib import Path

from unetseg.outputs.naming import output_source_stem, output_stems, skip_outputs


def test_each_input_gets_its_own_stem(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    files = [tmp_path / "a.png", tmp_path / "a.tif", tmp_path / "x" / "b.png", tmp_path / "y" / "b.png",
             tmp_path / "c.png", tmp_path / "a_png.tif"]
    stems = output_stems(files, Path("out"))
    assert stems[tmp_path / "c.png"] == Path("out/c")
    assert stems[tmp_path / "a.png"] == Path("out/a_png") and stems[tmp_path / "a.tif"] == Path("out/a_tif")
    assert stems[tmp_path / "x" / "b.png"] == Path("out/x/b") and stems[tmp_path / "y" / "b.png"] == Path("out/y/b")
    assert len(set(stems.values())) == len(files)  # a_png.tif's own stem meets a.png's renamed one: made unique


def test_outputs_next_to_their_input_are_skipped():
    assert output_source_stem(Path("scan.v2_index.png")) == "scan.v2"
    assert output_source_stem(Path("s_index.ome.zarr")) == "s" and output_source_stem(Path("s.png")) is None
    files = [Path(n) for n in ("a.png", "a_index.png", "a_summary.json", "road_overlay.png", "b_tif_index.tif",
                               "b.tif")]
    assert skip_outputs(files) == [Path("a.png"), Path("road_overlay.png"), Path("b.tif")]
