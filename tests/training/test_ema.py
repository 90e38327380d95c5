"""train.ema: a moving average of the weights is what validation scores and best.pt holds; it resumes exactly."""
import pytest
import torch
from torch import nn

from unetseg.errors import UnetsegError
from unetseg.models.checkpoint import read_checkpoint
from unetseg.training import train
from unetseg.training.ema import WeightAverage

from .conftest import make_config

EMA = {"train": {"scheduler": "none", "optimizer": "adam", "time_budget_minutes": 60, "ema": 0.9}}


def test_the_average_follows_the_warm_up_then_the_decay():
    source = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(source, 0.9)
    expected = {k: v.clone() for k, v in source.state_dict().items()}
    for step in range(1, 30):
        with torch.no_grad():
            for p in source.parameters():
                p.add_(torch.randn_like(p))
        source.train()(torch.randn(4, 3))  # BatchNorm's running stats and step count move
        d = min(0.9, (1 + step) / (10 + step))
        for key, value in source.state_dict().items():
            expected[key] = d * expected[key] + (1 - d) * value if value.is_floating_point() else value.clone()
        average.update()
    for key, value in average.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)
    assert average.model.state_dict()["1.num_batches_tracked"] == 29 and not average.model.training
    assert not any(p.requires_grad for p in average.model.parameters())
    with pytest.raises(ValueError, match="ema decay 1.0"):
        WeightAverage(source, 1.0)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    return train(make_config(**EMA), tmp_path_factory.mktemp("ema") / "run", progress=False)


def test_best_pt_holds_the_average_last_pt_the_weights_and_both(ema_run):
    last = read_checkpoint(ema_run.last_checkpoint)
    averaged = last["training"]["ema"]
    assert averaged["updates"] == ema_run.global_step > 0
    weights = last["state_dict"]
    assert any(not torch.equal(weights[k], averaged["weights"][k]) for k in weights)
    if ema_run.best_epoch == ema_run.epochs:  # the last validation was the best: best.pt is the average now
        best = read_checkpoint(ema_run.best_checkpoint)["state_dict"]
        assert all(torch.equal(best[k], averaged["weights"][k]) for k in best)


def test_resume_continues_the_average_exactly(tmp_path, ema_run):
    train(make_config(train={**EMA["train"], "epochs": 1}), tmp_path / "resumed", progress=False)
    resumed = train(make_config(**EMA), resume=tmp_path / "resumed", progress=False)
    a = read_checkpoint(ema_run.last_checkpoint)["training"]["ema"]
    b = read_checkpoint(resumed.last_checkpoint)["training"]["ema"]
    assert a["updates"] == b["updates"]
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert resumed.best_miou == ema_run.best_miou


def test_resuming_a_run_without_the_average_into_one_with_it_is_one_line(tmp_path):
    plain = {"train": {k: v for k, v in EMA["train"].items() if k != "ema"}}
    train(make_config(train={**plain["train"], "epochs": 1}), tmp_path / "run", progress=False)
    with pytest.raises(UnetsegError, match=r"the config differs from the run's \(train.ema: run has 0.0, config gives 0.9\)"):
        train(make_config(**EMA), resume=tmp_path / "run", progress=False)
