import torch
from torch import nn

import unetseg


def test_autoencoder_has_no_skip_connections():
    model = unetseg.ConvAutoencoder(1, 2, base_channels=4, depth=3)
    # the decoder's convs see exactly the upsampled channels: nothing is concatenated from the encoder
    widths = [4 * 2**i for i in range(3)]
    decoder_convs = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert [c.in_channels for c in decoder_convs[::2]] == list(reversed(widths))
    unet = unetseg.UNet(1, 2, base_channels=4, depth=3)
    unet_convs = [m for m in unet.up_convs.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert [c.in_channels for c in unet_convs[::2]] == [2 * w for w in reversed(widths)]


def test_autoencoder_keeps_the_model_contract():
    for padding in ("same", "valid"):
        ae = unetseg.ConvAutoencoder(3, 5, base_channels=4, depth=2, padding=padding).eval()
        unet = unetseg.UNet(3, 5, base_channels=4, depth=2, padding=padding)
        assert ae.margin == unet.margin and ae.stride == unet.stride
        n = ae.valid_input_size(70)
        assert n == unet.valid_input_size(70)
        with torch.no_grad():
            out = ae(torch.zeros(1, 3, n, n))
        assert out.shape == (1, 5, ae.output_size(n), ae.output_size(n))
