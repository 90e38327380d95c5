"""GPU checks of training: skipped without CUDA (CI has none); run on a lent GPU machine."""
import pytest
import torch

import unetseg
from unetseg.training import train

from .conftest import make_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("amp, precision", [("auto", "bf16"), ("fp16", "fp16"), ("off", "fp32")])
def test_cuda_training_with_mixed_precision_and_resume(tmp_path, amp, precision):
    config = make_config(train={"device": "cuda", "amp": amp, "epochs": 1, "scheduler": "none"})
    first = train(config, tmp_path / "run", progress=False)
    assert first.precision == precision and first.best_miou is not None
    longer = make_config(train={"device": "cuda", "amp": amp, "epochs": 2, "scheduler": "none"})
    resumed = train(longer, resume=tmp_path / "run", progress=False)
    assert resumed.epochs == 2 and resumed.global_step == 2 * first.global_step
    model = unetseg.load_model(resumed.best_checkpoint)
    assert next(model.parameters()).device.type == "cpu"  # checkpoints load anywhere
