import numpy as np
import pytest
import torch

from unetseg.errors import UnetsegError
from unetseg.models.precision import cpu_has_fast_bf16, resolve_precision
from unetseg.tiling import predict_tiled


def test_auto_precision_per_device_and_purpose():
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda).dtype == torch.float16  # inference: fp16 keeps 3 more mantissa bits
    assert resolve_precision(True, cuda).channels_last
    cpu = resolve_precision("auto", torch.device("cpu"))
    assert cpu.dtype == (torch.bfloat16 if cpu_has_fast_bf16() else None) and cpu.channels_last
    for amp in (False, None, "off"):
        assert resolve_precision(amp, cuda).dtype is None
    assert resolve_precision("bf16", cuda).dtype == torch.bfloat16
    assert resolve_precision("fp16", torch.device("cpu")).dtype == torch.float16
    with pytest.raises(UnetsegError, match="amp='int4' is not one of auto, off, bf16, fp16, int8"):
        resolve_precision("int4", cuda)
    with pytest.raises(UnetsegError, match="amp='int8' runs on CPUs"):
        resolve_precision("int8", cuda)
    assert resolve_precision("int8", torch.device("cpu")).name == "int8"


def test_a_batch_that_overflows_fp16_is_recomputed_in_fp32(rng):
    model = torch.nn.Conv2d(1, 2, kernel_size=1)  # |logits| up to 1e5 > 65504, fp16's largest value
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1e5, -1e5]).view(2, 1, 1, 1))
        model.bias.copy_(torch.tensor([-5e4, 5e4]))
    image = rng.integers(0, 256, (100, 90), dtype=np.uint8)
    fp32 = predict_tiled(model, image, tile_size=256, output="probs", amp=False)
    with pytest.warns(RuntimeWarning, match="fp16 overflowed"):
        fp16 = predict_tiled(model, image, tile_size=256, output="probs", amp="fp16")
    assert np.isfinite(fp16).all()
    np.testing.assert_allclose(fp16, fp32, atol=1e-6)
