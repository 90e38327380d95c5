import math

import pytest
import torch
import torch.nn.functional as F

from unetseg.config import LossConfig
from unetseg.losses import SegmentationLoss, build_loss, weighted_cross_entropy


def _example():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 4, generator=g)
    target = torch.randint(0, 3, (2, 5, 4), generator=g)
    return logits, target


def test_plain_ce_matches_torch():
    logits, target = _example()
    assert torch.allclose(weighted_cross_entropy(logits, target), F.cross_entropy(logits, target))


def test_weight_map_class_weights_and_ignore_by_hand():
    logits, target = _example()
    target[0, 0, :] = 255
    w = torch.rand(2, 5, 4, generator=torch.Generator().manual_seed(1)) + 0.5
    cw = torch.tensor([0.5, 1.0, 2.0])
    got = weighted_cross_entropy(logits, target, w, cw, ignore_index=255)
    logp = torch.log_softmax(logits, 1)
    total, count = 0.0, 0
    for n in range(2):
        for y in range(5):
            for x in range(4):
                t = int(target[n, y, x])
                if t == 255:
                    continue
                total += -float(logp[n, t, y, x]) * float(cw[t]) * float(w[n, y, x])
                count += 1
    assert count == 36
    assert got.item() == pytest.approx(total / count, rel=1e-5)


def test_all_ignored_gives_zero_with_grad():
    logits, target = _example()
    logits.requires_grad_(True)
    target[:] = 255
    loss = weighted_cross_entropy(logits, target, ignore_index=255)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_combined_loss_adds_smp_terms_and_honours_ignore():
    logits, target = _example()
    target[1, :2] = 255
    loss = SegmentationLoss(ce=1.0, dice=0.5, focal=0.25, lovasz=0.1, ignore_index=255)
    value = loss(logits, target)
    import segmentation_models_pytorch.losses as L

    expected = (weighted_cross_entropy(logits, target, ignore_index=255)
                + 0.5 * L.DiceLoss("multiclass", ignore_index=255)(logits, target)
                + 0.25 * L.FocalLoss("multiclass", ignore_index=255)(logits, target)
                + 0.1 * L.LovaszLoss("multiclass", ignore_index=255)(logits, target))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    # changing logits only at ignored pixels changes nothing
    logits2 = logits.clone()
    logits2[1, :, :2] = 100.0
    assert loss(logits2, target).item() == pytest.approx(value.item(), rel=1e-5)


def test_bf16_logits_are_computed_in_fp32():
    logits, target = _example()
    loss = SegmentationLoss()(logits.bfloat16(), target)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())


def test_build_loss_checks_class_weights_length():
    from unetseg.errors import UnetsegError

    with pytest.raises(UnetsegError, match="class_weights"):
        build_loss(LossConfig(class_weights=[1.0, 2.0]), num_classes=3)
    assert isinstance(build_loss(LossConfig(dice=1.0), ignore_index=255, num_classes=3), SegmentationLoss)
