"""The paper's networks: shapes, TensorFlow "same" padding, Keras initialisation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raekit.errors import RaekitError
from raekit.models.nets import BN_EPS, BN_MOMENTUM, SameConv2d, SameConvTranspose2d, build_networks


@pytest.mark.parametrize("network,size,channels",
                         [("conv8", 8, 1), ("conv32", 32, 3), ("conv64", 64, 3)])
def test_shapes_round_trip(network, size, channels):
    enc, dec = build_networks(network, channels=channels, latent_dim=5, width=32, encoder_out=10)
    x = torch.rand(3, channels, size, size)
    z = enc(x)
    assert z.shape == (3, 10)
    x_hat = dec(z[:, :5])
    assert x_hat.shape == x.shape
    assert 0 <= x_hat.min() and x_hat.max() <= 1  # sigmoid output


@pytest.mark.parametrize("kernel,stride,size", [(4, 2, 8), (5, 2, 8), (4, 1, 8), (5, 1, 7)])
def test_same_conv_transpose_is_the_adjoint_of_same_conv(kernel, stride, size):
    # TensorFlow defines conv2d_transpose(padding="SAME") as the gradient of conv2d(padding="SAME"),
    # so ⟨conv(x), y⟩ = ⟨x, convT(y)⟩ with shared weights pins the cropping down exactly.
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, stride=stride).double()
    convT = SameConvTranspose2d(3, 2, kernel, stride=stride).double()
    convT.weight.data = conv.weight.data.clone()
    conv.bias.data.zero_(), convT.bias.data.zero_()
    x = torch.randn(1, 2, size * stride, size * stride, dtype=torch.float64)
    y = torch.randn(1, 3, size, size, dtype=torch.float64)
    assert conv(x).shape == y.shape and convT(y).shape == x.shape
    assert torch.allclose((conv(x) * y).sum(), (x * convT(y)).sum())


def test_same_conv_pads_bottom_right_like_tensorflow():
    conv = SameConv2d(1, 1, 5, stride=2)
    x = torch.randn(1, 1, 8, 8)
    expected = F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias, stride=2)
    assert torch.allclose(conv(x), expected)


def test_keras_initialisation_and_batch_norm_settings():
    enc, dec = build_networks("conv32", channels=1, latent_dim=16, width=1)
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == BN_MOMENTUM == 0.01 and m.eps == BN_EPS == 1e-3 for m in bns)
    fc = dec.fc  # Glorot uniform: bound sqrt(6 / (fan_in + fan_out)), zero bias
    bound = (6 / (16 + 8 * 8 * 1024)) ** 0.5
    assert fc.weight.abs().max() <= bound and fc.weight.abs().max() > 0.9 * bound
    assert fc.bias.abs().max() == 0
    # the paper's channel counts at full width
    convs = [m.out_channels for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [128, 256, 512, 1024]


def test_wrong_image_size_is_a_clear_error():
    enc, _ = build_networks("conv32", channels=1, latent_dim=4, width=32)
    with pytest.raises(RaekitError,
                       match=r"expects images of shape \(1, 32, 32\), got \(1, 28, 28\)"):
        enc(torch.rand(2, 1, 28, 28))
    with pytest.raises(RaekitError, match="width"):
        build_networks("conv32", channels=1, latent_dim=4, width=0)
