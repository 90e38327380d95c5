"""`--minutes` is the whole run's budget: training stops early enough for the steps after it (timed on a fake
clock, so the same on any machine), and every step after the last epoch says what it is doing."""
import pytest

from unetseg.training import train
from unetseg.training import trainer as trainer_module
from unetseg.training.budget import (
    OBJECTS_MIN_SECONDS,
    OBJECTS_PER_VALIDATION,
    WRITE_S,
    AfterTraining,
    halo_seconds,
)

STEP_S, VALIDATION_S = 0.25, 10.0  # the fake clock: seconds per optimiser step and per validation pass


@pytest.fixture
def fake_clock(monkeypatch):
    """The run's clock counts steps and validation passes only."""
    validations = []
    real = trainer_module.score_images

    def timed_validation(*args, **kwargs):
        validations.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "score_images", timed_validation)
    monkeypatch.setattr(trainer_module.Trainer, "clock",
                        lambda self: STEP_S * self.state.global_step + VALIDATION_S * len(validations))
    return validations


def test_training_leaves_the_steps_after_it_their_time(tmp_path, tiny_config, fake_clock):
    budget = 60.0
    cfg = tiny_config(train={"epochs": None, "time_budget_minutes": budget / 60}, data={"patches_per_epoch": 8})
    result = train(cfg, tmp_path / "run", progress=False)
    # what follows the last step: its validation and the sample figure (one validation image, predicted again)
    after = AfterTraining(VALIDATION_S, 0.0, VALIDATION_S + 1.0, WRITE_S)
    assert result.stopped_by == "time_budget"
    assert result.seconds + after.samples + after.writing <= budget  # without the reserve: 60 s of training + 10
    epoch = 4 * STEP_S + VALIDATION_S  # 4 steps and a validation
    assert result.seconds >= budget - after.total() - epoch  # and no more than an epoch is given away
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "summary.json").is_file()


def test_a_budget_shorter_than_what_follows_training_still_trains_a_step(tmp_path, tiny_config, fake_clock):
    cfg = tiny_config(train={"epochs": None, "time_budget_minutes": 0.01}, data={"patches_per_epoch": 8})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.stopped_by == "time_budget" and result.global_step == 1 and result.best_miou is not None
    assert result.seconds == STEP_S + VALIDATION_S  # one step, then its validation
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()


def test_every_step_after_training_reports(tmp_path, tiny_config):
    lines = []
    cfg = tiny_config(model={"padding": "same"}, train={"epochs": 1, "time_budget_minutes": 30})
    train(cfg, tmp_path / "run", progress=False, on_status=lines.append)
    text = "\n".join(lines)
    for step in ("budget 30 min from the command's start", "measuring the halo best.pt's tiles need (<= 90 s)",
                 "comparing tiled and whole-image labels", "% agreement", "drawing samples.png",
                 "writing summary.json"):
        assert step in text, (step, text)
    assert all("\n" not in line for line in lines)


def test_the_halo_gets_a_small_bounded_share():
    assert halo_seconds(240) == 20.0 and halo_seconds(3600) == 180.0  # 20 s or 5 %, whichever is larger
    assert halo_seconds(30) == 6.0  # never more than a fifth of a short budget


def test_the_object_tuning_reserve_covers_both_tta_candidates():
    """Choosing the object post-processing predicts the validation images without TTA and with flips (4 views) and
    labels every seed level for each: the reserve scales with the validation time but never drops under the
    labelling's floor (small validation sets predict in ~0.1 s but take ~1 s per candidate to label)."""
    tuning = AfterTraining(objects=OBJECTS_MIN_SECONDS)
    assert tuning.with_validation(0.1, 0.0).objects == OBJECTS_MIN_SECONDS
    assert tuning.with_validation(10.0, 0.0).objects == OBJECTS_PER_VALIDATION * 10.0
    assert OBJECTS_PER_VALIDATION >= 1 + 4  # a plain prediction and one of 4 views, then the labelling
    assert AfterTraining().with_validation(10.0, 0.0).objects == 0.0  # no instance masks: nothing reserved
