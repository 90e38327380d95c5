import shutil

import pytest

pytest.importorskip("napari", reason="the napari extra is not installed")


@pytest.fixture
def checkpoint(tmp_path, trained_same_unet):
    """A checkpoint of a U-Net briefly fitted on the nuclei sample (1 band, background/class1)."""
    import unetseg

    return unetseg.save_checkpoint(trained_same_unet, tmp_path / "nuclei.pt")


@pytest.fixture
def no_remembered(tmp_path, monkeypatch):
    """The viewer's remembered checkpoint kept in the test's folder, not the user's home."""
    monkeypatch.setenv("UNETSEG_CONFIG_DIR", str(tmp_path / "config"))


needs_display = pytest.mark.skipif(shutil.which("Xvfb") is None,
                                   reason="napari's widgets need a display: Xvfb (bash scripts/install_headless_display.sh; "
                                          ".ci/run runs it)")
