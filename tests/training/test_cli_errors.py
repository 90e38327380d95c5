"""Bad input gives one clear line on stderr and exit code 2 (no traceback), nothing lost."""
import cv2
import numpy as np
import yaml

from unetseg.cli import main

from .conftest import TINY, merge


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    return code, err


def write_config(tmp_path, extra=None):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, extra or {})))
    return path


def one_line(code, err):
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_key_and_value(tmp_path, capsys):
    cfg = write_config(tmp_path)
    err = one_line(*run_cli(["train", cfg, "--set", "train.epoks=3"], capsys))
    assert "train.epoks" in err
    err = one_line(*run_cli(["train", cfg, "--set", "train.lr=-1"], capsys))
    assert "train.lr" in err and "-1" in err
    err = one_line(*run_cli(["train", tmp_path / "nope.yaml"], capsys))
    assert "nope.yaml" in err


def test_resume_without_last_pt(tmp_path, capsys):
    cfg = write_config(tmp_path)
    (tmp_path / "run").mkdir()
    err = one_line(*run_cli(["train", cfg, "--resume", tmp_path / "run"], capsys))
    assert "no last.pt" in err


def _folder(tmp_path, mask_value=1, mask_shape=(64, 64)):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"im{i}.png"), rng.integers(0, 255, (64, 64), dtype=np.uint8))
        mask = np.zeros(mask_shape, np.uint8)
        mask[10:30, 10:30] = mask_value if i == 2 else 1
        cv2.imwrite(str(masks / f"im{i}.png"), mask)
    return images, masks


def folder_config(tmp_path, images, masks):
    return write_config(tmp_path, {"data": {"source": "folder", "sample": None, "images": str(images),
                                            "masks": str(masks), "val_fraction": 0.34,
                                            "classes": [{"name": "bg"}, {"name": "fg"}],
                                            "ignore_index": 255}})


def test_mask_value_out_of_range(tmp_path, capsys):
    images, masks = _folder(tmp_path, mask_value=7)
    err = one_line(*run_cli(["train", folder_config(tmp_path, images, masks), "--out", tmp_path / "r"], capsys))
    assert "im2.png" in err and "7" in err
    assert not (tmp_path / "r" / "last.pt").exists()


def test_image_mask_size_mismatch(tmp_path, capsys):
    images, masks = _folder(tmp_path, mask_shape=(60, 64))
    err = one_line(*run_cli(["train", folder_config(tmp_path, images, masks), "--out", tmp_path / "r"], capsys))
    assert "im0.png" in err and "differs" in err


def test_train_on_folder_then_evaluate_folder(tmp_path, capsys):
    images, masks = _folder(tmp_path)
    cfg = folder_config(tmp_path, images, masks)
    assert main(["train", str(cfg), "--out", str(tmp_path / "r"), "--set", "train.epochs=1",
                 "--set", "data.patch_size=48"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "r" / "best.pt"), "--images", str(images),
                 "--masks", str(masks), "--tile-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "fg" in out
    # a mask value the checkpoint's classes do not know
    bad = tmp_path / "badmasks"
    bad.mkdir()
    for p in masks.iterdir():
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        m[0, 0] = 5
        cv2.imwrite(str(bad / p.name), m)
    err = one_line(*run_cli(["evaluate", "--checkpoint", tmp_path / "r" / "best.pt", "--images", images,
                             "--masks", bad], capsys))
    assert "5" in err and "badmasks" in err


def test_one_fold_is_refused_before_the_plan_reads_the_data(tmp_path, capsys, monkeypatch):
    import unetseg.commands.train as command

    def no_plan(*args, **kwargs):
        raise AssertionError("planned before checking --folds")

    monkeypatch.setattr(command, "_planned", no_plan)
    err = one_line(*run_cli(["train", "--images", tmp_path, "--masks", tmp_path, "--folds", 1], capsys))
    assert err == "unetseg train: error: --folds 1: cross-validation needs at least 2 folds"
