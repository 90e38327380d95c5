"""U-Nets (and other decoders) with pretrained-style encoders from segmentation-models-pytorch.

Nothing is downloaded: ``encoder_weights`` is None (random init) or the path of a local state-dict
file for the encoder (e.g. one saved from torchvision/timm on a machine with network access).
"""
from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import UnetsegError
from .base import SegmentationModel
from .registry import register_model
from .sizes import SizeRule

# smp architecture class names by our registry suffix ("smp-unet" -> "Unet", ...)
SMP_ARCHS = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "fpn": "FPN",
    "linknet": "Linknet",
    "pspnet": "PSPNet",
    "deeplabv3plus": "DeepLabV3Plus",
    "manet": "MAnet",
}


class SmpModel(SegmentationModel):
    """An smp segmentation model behind the unetseg contract ("same" geometry, stride 2**encoder_depth).

    Args:
        arch: one of SMP_ARCHS keys ("unet", "fpn", ...).
        encoder_name: any smp encoder name ("resnet34", "resnet18", "efficientnet-b0", ...).
        in_channels, num_classes: as for UNet.
        encoder_depth: number of encoder stages (5 -> inputs divisible by 32).
        encoder_weights: None, or a local file holding the encoder's state dict; never a hub name.
    """

    def __init__(
        self,
        arch: str = "unet",
        encoder_name: str = "resnet34",
        in_channels: int = 3,
        num_classes: int = 2,
        encoder_depth: int = 5,
        encoder_weights: str | os.PathLike | None = None,
        **arch_kwargs: Any,
    ) -> None:
        super().__init__()
        if arch not in SMP_ARCHS:
            raise ValueError(f"smp arch {arch!r} is not one of {sorted(SMP_ARCHS)}")
        self.registry_name = f"smp-{arch}"
        self._config_kwargs = dict(  # the arch travels in the registry name
            encoder_name=encoder_name, in_channels=in_channels, num_classes=num_classes,
            encoder_depth=encoder_depth, **arch_kwargs,
        )
        self.in_channels, self.num_classes = in_channels, num_classes
        self.size_rule = SizeRule(depth=encoder_depth, padding="same")
        if arch == "unet":
            arch_kwargs.setdefault("decoder_channels", tuple(256 // 2**i for i in range(encoder_depth)))
        import segmentation_models_pytorch as smp  # imported on use: it pulls in timm/torchvision (seconds)

        self.net = getattr(smp, SMP_ARCHS[arch])(
            encoder_name=encoder_name, encoder_weights=None, encoder_depth=encoder_depth,
            in_channels=in_channels, classes=num_classes, **arch_kwargs,
        )
        if encoder_weights is not None:
            self.load_encoder_weights(encoder_weights)

    def load_encoder_weights(self, path: str | os.PathLike) -> None:
        """Load an encoder state dict from a local file (weights_only).

        Every key must match: a missing, unreadable or mismatching file (wrong encoder, wrong key prefix,
        wrong shapes) is a one-line UnetsegError, never a silent partial load.
        """
        name = self._config_kwargs["encoder_name"]
        if not os.path.isfile(path):
            raise UnetsegError(f"encoder_weights file not found: {path} (weights are never downloaded)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001  torch raises many types for foreign or damaged files
            raise UnetsegError(f"encoder_weights {path} is not a readable PyTorch state dict "
                               f"({type(err).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise UnetsegError(f"encoder_weights {path} does not hold a state dict of tensors")
        expected = self.net.encoder.state_dict()
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # a classifier head smp drops
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            parts = [f"{len(keys)} {what} key(s), e.g. {keys[0]!r}"
                     for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", wrong))
                     if keys]
            raise UnetsegError(f"encoder_weights {path} do not fit encoder {name}: {'; '.join(parts)}")
        self.net.encoder.load_state_dict(state, strict=False)  # strict=False: the head keys dropped above

    def encoder_modules(self) -> list[torch.nn.Module]:
        return [self.net.encoder]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(x)


for _arch in SMP_ARCHS:
    register_model(f"smp-{_arch}", arch=_arch)(SmpModel)
