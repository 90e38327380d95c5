"""GPU checks of predict_tiled: skipped without CUDA (CI has none); run on a lent GPU machine."""
import numpy as np
import pytest
import torch

import unetseg

from ..conftest import tiny_unet, whole_image_probs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_cuda_fp32_tiled_equals_cpu_whole_image(rng, padding):
    model = tiny_unet(padding)
    image = rng.integers(0, 256, (700, 333), dtype=np.uint8)
    geometry = unetseg.tiling.grid.Geometry.of(model)
    context = unetseg.tiling.grid.TileGrid.build(image.shape, 256, geometry).rows.context
    reference = whole_image_probs(model, image, context)
    probs = unetseg.predict_tiled(model, image, tile_size=256, output="probs", amp=False, device="cuda")
    np.testing.assert_allclose(probs, reference, atol=1e-4)
    assert next(model.parameters()).device.type == "cpu"  # the caller's model stays where it was


@pytest.mark.parametrize("amp", ["auto", "bf16", "fp16"])
def test_cuda_mixed_precision_agrees_with_fp32(rng, amp):
    model = tiny_unet("same").cuda()
    image = rng.integers(0, 256, (640, 640), dtype=np.uint8)
    fp32 = unetseg.predict_tiled(model, image, tile_size=256, amp=False)
    mixed = unetseg.predict_tiled(model, image, tile_size="auto", amp=amp, tta="flips")
    fp32_tta = unetseg.predict_tiled(model, image, tile_size=256, amp=False, tta="flips")
    assert (mixed == fp32_tta).mean() > 0.99
    assert (fp32 == fp32_tta).mean() > 0.9
