"""The tuning cache: a measured engine/tile choice is reused by a later process on the same machine, and only
when nothing that could change it differs."""
import json

import numpy as np
import pytest

from unetseg.models.ensemble import Ensemble
from unetseg.tiling import autotile, tuning
from unetseg.tiling.options import TileOptions
from unetseg.tiling.predict import tiled

from ..conftest import tiny_unet


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "tuning.json"
    monkeypatch.setenv(tuning.ENV, str(path))
    monkeypatch.setattr(autotile, "_TIMINGS", {})
    return path


def image(side: int = 600, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)


def run(model, img, **options):
    return tiled(model, img, TileOptions(**options))


def new_process(monkeypatch) -> list:
    """Forget this process's timings, as a new process starts without them; returns the list of timed shapes."""
    monkeypatch.setattr(autotile, "_TIMINGS", {})
    timed: list = []
    real = autotile.seconds_per_tile

    def counting(engine, key, shape, **kwargs):
        timed.append(shape)
        return real(engine, key, shape, **kwargs)

    monkeypatch.setattr(autotile, "seconds_per_tile", counting)
    return timed


def test_a_later_process_reuses_the_measured_choice_without_timing(cache, monkeypatch):
    model = tiny_unet("same", in_channels=1)
    first = run(model, image())
    entries = json.loads(cache.read_text())
    assert len(entries) == 1
    (entry,) = entries.values()
    assert entry["engine"] == first.report.engine and entry["tile"] > 0

    timed = new_process(monkeypatch)
    again = run(model, image(seed=1))  # other values, same shape: the same choice
    assert timed == []
    assert again.report.tile_shape == first.report.tile_shape and again.report.engine == first.report.engine
    np.testing.assert_array_equal(again.output, run(model, image(seed=1),
                                                                      tile_size=entry["tile"]).output)


def test_a_choice_that_stayed_on_torch_is_compared_once_the_work_repays_converting(cache, monkeypatch):
    speed = {"torch": 1.0, "openvino": 0.25, "onnxruntime": 2.0}
    monkeypatch.setattr(autotile, "seconds_per_tile", lambda engine, *a, **k: speed[engine.name])
    monkeypatch.setattr(autotile, "_TORCH_WORK", {})
    model = tiny_unet("same", in_channels=1)
    per_image = run(model, image(), engine="torch", tile_size=192).report.num_tiles
    monkeypatch.setattr(autotile, "CONVERT_AFTER_SECONDS", 1.5 * per_image)
    first = run(model, image(), tile_size=192)
    assert first.report.engine == "torch"
    assert [e["compared"] for e in json.loads(cache.read_text()).values()] == [False]

    monkeypatch.setattr(autotile, "_TORCH_WORK", {})  # a new process: its first image reuses the choice
    assert run(model, image(seed=1), tile_size=192).report.engine == "torch"
    second = run(model, image(seed=2), tile_size=192)  # with the first, the work repays converting: compared now
    assert second.report.engine == "openvino"
    assert [e["compared"] for e in json.loads(cache.read_text()).values()] == [True]
    np.testing.assert_array_equal(second.output, run(model, image(seed=2), tile_size=192, engine="torch").output)


def test_a_torch_choice_written_before_the_compared_flag_counts_as_uncompared(cache):
    tuning.remember("old", tuning.Choice("torch", 512, 0.5))
    tuning.remember("older", tuning.Choice("openvino", 512, 0.5))
    entries = json.loads(cache.read_text())
    for entry in entries.values():
        del entry["compared"]
    cache.write_text(json.dumps(entries))
    assert tuning.recall("old").compared is False
    assert tuning.recall("older").compared is True


def test_what_changes_a_choice_is_measured_anew(cache, monkeypatch):
    run(tiny_unet("same"), image())
    timed = new_process(monkeypatch)
    run(tiny_unet("same"), image(side=700))  # another image shape
    assert timed
    timed.clear()
    run(tiny_unet("same", depth=2), image())  # another architecture
    assert timed
    timed.clear()
    run(tiny_unet("same"), image(), amp=False)  # another precision (where auto is not fp32)
    run(tiny_unet("same"), image(), output="probs")  # another forward stage
    assert timed
    assert len(json.loads(cache.read_text())) >= 4


def test_another_machine_or_thread_count_does_not_reuse_a_choice(monkeypatch):
    request = {"model": "m", "image": [600, 600]}
    key = tuning.choice_key(request, autotile.torch.device("cpu"))
    monkeypatch.setattr(autotile.torch, "get_num_threads", lambda: 97)
    assert tuning.choice_key(request, autotile.torch.device("cpu")) != key
    monkeypatch.undo()
    monkeypatch.setattr(tuning, "cpu_model", lambda: "another CPU")
    assert tuning.choice_key(request, autotile.torch.device("cpu")) != key


def test_a_choice_that_no_longer_fits_in_memory_is_measured_again(cache, monkeypatch):
    model = tiny_unet("same")
    run(model, image())
    entries = json.loads(cache.read_text())
    for entry in entries.values():
        entry["batch_bytes"] = 1e18  # more than any machine has free
    cache.write_text(json.dumps(entries))
    timed = new_process(monkeypatch)
    run(model, image())
    assert timed


def test_an_old_choice_is_measured_again(cache, monkeypatch):
    model = tiny_unet("same")
    run(model, image())
    entries = json.loads(cache.read_text())
    for entry in entries.values():
        entry["saved"] -= tuning.MAX_AGE_SECONDS + 1
    cache.write_text(json.dumps(entries))
    timed = new_process(monkeypatch)
    run(model, image())
    assert timed


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"k": 3}', ""])
def test_a_damaged_cache_file_is_measured_over_and_replaced(cache, monkeypatch, content):
    cache.parent.mkdir(parents=True)
    cache.write_text(content)
    result = run(tiny_unet("same"), image())
    assert result.output.shape == (600, 600)
    entries = json.loads(cache.read_text())  # a valid file again, holding this choice
    assert any(isinstance(e, dict) and e.get("tile") for e in entries.values())


def test_an_unwritable_cache_never_fails_a_prediction(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(tuning.ENV, str(blocker / "tuning.json"))  # its folder is a file: nothing can be written
    monkeypatch.setattr(autotile, "_TIMINGS", {})
    assert run(tiny_unet("same"), image()).output.shape == (600, 600)
    assert not list(tmp_path.glob("**/*.part"))


def test_off_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tuning.cache_file() is None
    run(tiny_unet("same"), image())
    assert not list(tmp_path.iterdir())


def test_the_default_file_is_in_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(tuning.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tuning.cache_file() == tmp_path / "unetseg" / "tuning.json"


def test_the_cache_keeps_the_most_recent_entries(cache, monkeypatch):
    monkeypatch.setattr(tuning, "MAX_ENTRIES", 3)
    for i in range(5):
        tuning.remember(f"k{i}", tuning.Choice("torch", 256 + i))
    entries = json.loads(cache.read_text())
    assert sorted(entries) == ["k2", "k3", "k4"]
    assert tuning.recall("k4") == tuning.Choice("torch", 260, None, 0.0, cached=True)


def test_ensembles_of_other_members_are_timed_apart():
    one = Ensemble([tiny_unet("same", seed=0), tiny_unet("same", seed=1)])
    two = Ensemble([tiny_unet("same", seed=0), tiny_unet("same", depth=3, seed=1),
                    tiny_unet("same", seed=2)])
    assert autotile.model_key(one) != autotile.model_key(two)
    assert autotile.model_key(one) == autotile.model_key(Ensemble([tiny_unet("same", seed=3)] * 2))


def test_a_model_without_a_config_is_not_kept(cache):
    import torch

    class Bare(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, -x], dim=1)

    run(Bare(), image(300).astype(np.float32))
    assert not cache.exists() or json.loads(cache.read_text()) == {}
