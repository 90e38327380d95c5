"""Training under faults: a full disk keeps the last good checkpoint and stops with one line; a resumed run's
clock never goes back; a last.pt whose training state does not fit is one line."""
import csv
import types

import pytest
import torch
import yaml

from unetseg.cli import main
from unetseg.errors import UnetsegError
from unetseg.models.checkpoint import read_checkpoint
from unetseg.training import train
from unetseg.training import trainer as trainer_module

from ..faults import cli_lines, fill_disk, needs_dev_full
from .conftest import TINY, merge

RESUMABLE = {"train": {"scheduler": "none", "epochs": 1}}


@needs_dev_full
@pytest.mark.parametrize("full_at", ["metrics.csv", "last.pt"])
def test_full_disk_during_training_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch, full_at):
    """The disk fills up in the second epoch, before its metrics row or before its last.pt (torch's zip writer)."""
    save = trainer_module.save_run_checkpoint

    def save_run_checkpoint(path, model, meta, training=None):
        if meta["training"].epoch == 2 and path.name == full_at:
            fill_disk(monkeypatch)
        return save(path, model, meta, training)

    append = trainer_module.MetricsLog.append

    def append_row(self, values):
        if len(self.rows) == 1 and full_at == "metrics.csv":
            fill_disk(monkeypatch)
        return append(self, values)

    monkeypatch.setattr(trainer_module, "save_run_checkpoint", save_run_checkpoint)
    monkeypatch.setattr(trainer_module.MetricsLog, "append", append_row)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(merge(TINY, {"train": {"plot_samples": 0}})))
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run)]) == 2
    lines = cli_lines(capsys)
    assert lines == [f"unetseg train: error: training stopped: cannot write {run / full_at}: No space left "
                     f"on device (the last good checkpoint is {run / 'last.pt'})"]
    last = read_checkpoint(run / "last.pt")
    assert last["training"]["state"]["epoch"] == 1 and last["meta"]["training"]["epoch"] == 1
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == (["1"] if full_at == "metrics.csv" else ["1", "2"])


def test_metrics_time_never_goes_back_across_resume(tmp_path, tiny_config, monkeypatch):
    """Validation takes 100 s on a fake clock: the time a row reports is the time the resumed run starts from."""
    fake = {"now": 0.0}

    def perf_counter():
        fake["now"] += 0.001
        return fake["now"]

    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=perf_counter))
    validate = trainer_module.Trainer._validate

    def slow_validate(self):
        fake["now"] += 100.0
        return validate(self)

    monkeypatch.setattr(trainer_module.Trainer, "_validate", slow_validate)
    train(tiny_config(**RESUMABLE), tmp_path / "run", progress=False)
    train(tiny_config(**merge(RESUMABLE, {"train": {"epochs": 3}})), resume=tmp_path / "run", progress=False)
    times = [float(r["time_s"]) for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv"))]
    assert len(times) == 3 and times[0] > 100 and times[1] > times[0] + 100 and times[2] > times[1] + 100
    elapsed = read_checkpoint(tmp_path / "run" / "last.pt")["training"]["state"]["elapsed"]
    assert elapsed >= times[-1]


@pytest.mark.parametrize("damage", ["optimizer", "shapes"])
def test_resume_from_a_last_pt_whose_state_does_not_fit(tmp_path, tiny_config, damage):
    train(tiny_config(**RESUMABLE), tmp_path / "run", progress=False)
    last = tmp_path / "run" / "last.pt"
    payload = torch.load(last, weights_only=True)
    if damage == "optimizer":
        del payload["training"]["optimizer"]
    else:
        payload["state_dict"] = {k: v[:1] if v.ndim else v for k, v in payload["state_dict"].items()}
    torch.save(payload, last)
    with pytest.raises(UnetsegError) as info:
        train(tiny_config(**merge(RESUMABLE, {"train": {"epochs": 2}})), resume=tmp_path / "run", progress=False)
    message = str(info.value)
    assert "\n" not in message and str(last) in message
    assert ("optimizer" if damage == "optimizer" else "wrong-shape weight") in message
