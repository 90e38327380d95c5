"""The volume plan: 2D, 2.5D or 3D networks (one 3D U-Net with per-axis kernels and pooling), chosen by measured
step time within the budget; the fingerprint of a folder of NIfTI volumes and of the brain sample's volume."""
import pytest
import yaml

import unetseg
from unetseg.cli import main
from unetseg.data.volume_fingerprint import fingerprint_volume_folder, fingerprint_volume_sample
from unetseg.training import volume_plan
from unetseg.training.volume_plan import layout, make_volume_plan, patch_shape

from ..data.nifti_cases import SPACING, write_cases


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_cases(tmp_path_factory.mktemp("vols"), n=3)


def test_layouts_differ_only_along_z():
    iso = (1.0, 1.0, 1.0)
    nets = {k: unetseg.UNet(1, 2, base_channels=4, depth=3, padding="same", spatial_dims=3, **layout(k, 3, iso))
            for k in ("2d", "2.5d", "3d")}
    radii = {k: m.field_radii for k, m in nets.items()}
    assert radii["2d"][0] == 0 and radii["2.5d"][0] == volume_plan.CONTEXT_SLICES and radii["3d"][0] > radii["2.5d"][0]
    assert nets["2.5d"].axis_rules[0].padding == "valid"  # its context slices are consumed, not zero-padded
    assert radii["2d"][1:] == radii["2.5d"][1:] == radii["3d"][1:]
    assert [rule.stride for rule in nets["2d"].axis_rules] == [1, 8, 8]
    # a z 3.75x coarser than y/x is not pooled until the others catch up (nnU-Net's rule)
    pooling = layout("3d", 4, SPACING)["pooling"]
    assert pooling[0] == [1, 2, 2] and pooling[-1] == [2, 2, 2]
    with pytest.raises(ValueError, match="kind='4d'"):
        layout("4d", 3, iso)


def test_fingerprint_of_a_folder_of_ct_volumes(folder):
    fp = fingerprint_volume_folder(*folder)
    assert fp.volumes == 3 and fp.shapes[0] == (12, 20, 24) and fp.spacing == pytest.approx(SPACING)
    assert fp.num_classes == 3 and sum(fp.class_fractions) == pytest.approx(1.0)
    assert fp.ct_like and fp.dtype == "int16" and fp.anisotropy == pytest.approx(3.75)
    # 3D patches shaped by the spacing: fewer voxels along the coarse z than in-plane
    z, y, x = patch_shape("3d", fp, 4)
    assert z <= y and y == x


def test_brain_sample_fingerprint_is_isotropic_mri():
    fp = fingerprint_volume_sample("brain")
    assert fp.spacing == (1.0, 1.0, 1.0) and fp.num_classes == 3 and not fp.ct_like and fp.volumes == 2
    with pytest.raises(unetseg.errors.UnetsegError, match="'nuclei' is not a volume"):
        fingerprint_volume_sample("nuclei")


def timings(costs):
    """A measure(): seconds per step from ``costs[kind]`` scaled by the base width."""
    return lambda kind, fp, base, patch, batch: costs[kind] * base / 32


@pytest.mark.parametrize(("costs", "kind", "base"), [
    ({"2d": 0.5, "2.5d": 0.5, "3d": 0.54}, "3d", 32),   # z context at about the 2D step: most context wins
    ({"2d": 0.5, "2.5d": 0.52, "3d": 0.8}, "2.5d", 32),  # 3D would cost 1.6x the 2D step (fewer steps); 2.5D not
    ({"2d": 0.5, "2.5d": 0.6, "3d": 0.8}, "2d", 32),    # 2.5D 1.2x: slice by slice
    ({"2d": 2.0, "2.5d": 2.0, "3d": 2.1}, "3d", 16),    # the 2D network itself narrower: 3D at its width
    ({"2d": 2.0, "2.5d": 2.1, "3d": 9.0}, "2.5d", 16),
])
def test_the_plan_takes_the_most_z_context_that_trains_enough_steps(folder, costs, kind, base):
    fp = fingerprint_volume_folder(*folder)
    plan = make_volume_plan(fp, 10.0, measure=timings(costs), clock=lambda: 0.0)
    cfg = plan.run_config()  # a valid run config
    assert cfg.model.kwargs["base_channels"] == base and cfg.model.kwargs["spatial_dims"] == 3
    assert {k: cfg.model.kwargs.get(k) for k in ("pooling", "kernels", "context_slices")} == {
        "context_slices": None, **layout(kind, 4, fp.spacing)}
    assert plan.reasons["model.spatial_dims"].startswith(f"{kind.upper()}:")
    assert cfg.data.normalize == "ct" and cfg.data.source == "folder"
    assert "# " + plan.reasons["model.spatial_dims"] in plan.to_yaml()
    # BatchNorm sees several places per step: a 2D network single slices from 8 places, the others 2+ patches
    assert cfg.train.batch_size >= volume_plan.MIN_BATCH
    if kind in ("2d", "2.5d"):  # 16x16 px patches: as many places per step as fit MAX_BATCH
        slices = 1 + 2 * volume_plan.CONTEXT_SLICES if kind == "2.5d" else 1
        assert cfg.data.patch_size[0] == slices and cfg.train.batch_size == volume_plan.MAX_BATCH


def test_volume_validations_during_training_take_a_bounded_halo():
    """The exact halo of a depth-4 network (96 voxels in-plane) would make a validation's tiles many times the
    volume; validations during training take VOLUME_VAL_HALO, capped by the field along each axis."""
    from unetseg.tiling import volume_input_voxels
    from unetseg.training.budget import VOLUME_VAL_HALO

    fp = fingerprint_volume_sample("brain")
    slab = (29, 208, 176)
    for kind in ("2d", "2.5d"):
        model = volume_plan.build(kind, fp, 8)
        assert volume_input_voxels(model, slab, VOLUME_VAL_HALO) < 0.5 * volume_input_voxels(model, slab, "exact")


def test_plan_cli_plans_a_folder_of_volumes(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(volume_plan, "volume_step_seconds", timings({"2d": 0.5, "2.5d": 0.5, "3d": 0.52}))
    out = tmp_path / "plan.yaml"
    assert main(["plan", "--images", str(folder[0]), "--masks", str(folder[1]), "--out", str(out)]) == 0
    config = yaml.safe_load(out.read_text())
    fp = fingerprint_volume_folder(*folder)
    assert {k: config["model"][k] for k in ("pooling", "kernels")} == layout("3d", 4, fp.spacing)
    assert len(config["data"]["patch_size"]) == 3 and config["train"]["batch_size"] >= volume_plan.MIN_BATCH
    assert main(["plan", "--sample", "nuclei", "--volume"]) == 2
    assert "'nuclei' is not a volume" in capsys.readouterr().err
