"""The paper's image networks (Ghosh et al. 2020, appendix; reference code
``models/rae/rae_mnist.py``, ``rae_celeba.py``).

* ``conv32`` — MNIST and CIFAR-10 (32×32): encoder Conv 128→256→512→1024 (4×4, stride 2, BN,
  ReLU), flatten, Dense(d); decoder Dense(8·8·1024), ConvT 512, 256 (4×4, stride 2, BN, ReLU),
  ConvT C (4×4, stride 1), sigmoid.
* ``conv64`` — CelebA (64×64): the same with 5×5 kernels, a fourth decoder block (ConvT 128) and
  d = 64. Its encoder takes x as it is; the ``conv32`` encoder first maps x to 2x − 1 (reference
  ``rae_celeba.py`` has no such layer, ``rae_mnist.py``/``rae_cifar.py`` do).
* ``conv8`` — a small network of the same shape for 8×8 images (scikit-learn's digits).

``width`` divides every channel count, so ``width=4`` gives a network that trains on a CPU.
``filters`` sets the convolutions' base number of filters (the reference's ``num_filters``: 128,
or 64 for its CelebA CV-VAE); the dense layers keep their size.
Padding follows TensorFlow's "same" rule exactly (extra padding on the bottom/right), and the
initialisation and batch-norm settings are Keras' defaults (Glorot-uniform kernels, zero
biases, momentum 0.99 → PyTorch's 0.01, eps 1e-3), so the published β/λ transfer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RaekitError
from .ops import BatchNorm2d, ReLU, conv2d, conv_transpose2d

BN_MOMENTUM = 0.01  # Keras' 0.99
BN_EPS = 1e-3


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (asymmetric when the total padding is odd)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = _same_pads(x.shape[-2], kh, sh)
        left, right = _same_pads(x.shape[-1], kw, sw)
        if top == bottom and left == right:  # symmetric: let the convolution pad (no copy)
            return conv2d(x, self.weight, self.bias, self.stride, (top, left))
        return conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d whose output is ``stride × input``, cropped as TensorFlow's "same" does.

    The full transposed convolution is cropped by ``before`` at the start and ``after`` at the
    end, where (before, after) is the "same" padding of the forward convolution it transposes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        h, w = x.shape[-2] * sh, x.shape[-1] * sw
        top, _ = _same_pads(h, kh, sh)
        left, _ = _same_pads(w, kw, sw)
        y = conv_transpose2d(x, self.weight, self.bias, self.stride, (top, left))
        if y.shape[-2:] == (h, w):  # symmetric padding: no crop (a slice's backward copies)
            return y
        return y[..., :h, :w]  # PyTorch crops symmetrically; drop TF's extra bottom/right rows


def keras_init_(module: nn.Module) -> nn.Module:
    """Glorot-uniform kernels and zero biases on every conv/dense layer (Keras' defaults)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Conv1d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _bn(channels: int) -> BatchNorm2d:
    return BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


@dataclass(frozen=True)
class ConvSpec:
    """Shape of one of the paper's encoder/decoder pairs."""

    image_size: int
    kernel: int
    encoder_channels: tuple[int, ...]
    decoder_channels: tuple[int, ...]
    decoder_start: int  # spatial size after the decoder's dense layer
    decoder_start_channels: int
    # the reference code regularises CelebA's first dense layer, not MNIST's
    l2_includes_dense: bool
    center: bool = True  # the encoder maps x to 2x − 1 (reference MNIST/CIFAR nets, not CelebA's)
    base_filters: int = 128  # the convolutions' channels are multiples of this (``filters=``)


NETWORKS: dict[str, ConvSpec] = {
    "conv32": ConvSpec(32, 4, (128, 256, 512, 1024), (512, 256), 8, 1024, False),
    "conv64": ConvSpec(64, 5, (128, 256, 512, 1024), (512, 256, 128), 8, 1024, True,
                       center=False),
    "conv8": ConvSpec(8, 4, (64, 128), (64,), 4, 128, False, base_filters=64),
}


def _channels(spec: ConvSpec, c: int, width: int, filters: int | None) -> int:
    """A convolution's channels: ``c`` rescaled to ``filters`` base filters, divided by width."""
    if filters is not None:
        c = c * filters // spec.base_filters
    return max(c // width, 1)


class ConvEncoder(nn.Module):
    """x (B, C, H, W) in [0, 1] → z (B, out_dim)."""

    def __init__(self, spec: ConvSpec, in_channels: int, out_dim: int, width: int = 1,
                 center: bool | None = None, filters: int | None = None):
        super().__init__()
        self.image_size, self.in_channels = spec.image_size, in_channels
        self.center = spec.center if center is None else bool(center)
        layers: list[nn.Module] = []
        c_in, size = in_channels, spec.image_size
        for c in spec.encoder_channels:
            c = _channels(spec, c, width, filters)
            layers += [SameConv2d(c_in, c, spec.kernel, stride=2), _bn(c), ReLU(inplace=True)]
            c_in, size = c, -(-size // 2)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * size * size, out_dim)
        keras_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise RaekitError(
                f"the encoder expects images of shape ({self.in_channels}, {self.image_size}, "
                f"{self.image_size}), got {tuple(x.shape[1:])}"
            )
        if self.center:
            x = 2 * x - 1  # the reference MNIST/CIFAR encoder's first layer
        h = self.features(x)
        return self.fc(h.flatten(1))


class ConvDecoder(nn.Module):
    """z (B, d) → x̂ (B, C, H, W) in [0, 1]."""

    def __init__(self, spec: ConvSpec, out_channels: int, latent_dim: int, width: int = 1,
                 filters: int | None = None):
        super().__init__()
        self.start = spec.decoder_start
        self.start_channels = max(spec.decoder_start_channels // width, 1)
        self.fc = nn.Linear(latent_dim, self.start_channels * self.start**2)
        layers: list[nn.Module] = []
        c_in = self.start_channels
        for c in spec.decoder_channels:
            c = _channels(spec, c, width, filters)
            layers += [SameConvTranspose2d(c_in, c, spec.kernel, stride=2), _bn(c),
                       ReLU(inplace=True)]
            c_in = c
        layers += [SameConvTranspose2d(c_in, out_channels, spec.kernel, stride=1), nn.Sigmoid()]
        self.blocks = nn.Sequential(*layers)
        self.l2_includes_dense = spec.l2_includes_dense
        keras_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.start_channels, self.start, self.start)
        return self.blocks(h)

    def regularized_kernels(self) -> list[nn.Parameter]:
        """The kernels the reference code's L2 penalty covers (no biases, no batch norm)."""
        convs = [m.weight for m in self.blocks.modules() if isinstance(m, nn.ConvTranspose2d)]
        return ([self.fc.weight] if self.l2_includes_dense else []) + convs


def build_networks(network: str, *, channels: int, latent_dim: int, width: int = 1,
                   encoder_out: int | None = None, filters: int | None = None,
                   center: bool | None = None) -> tuple[ConvEncoder, ConvDecoder]:
    """Encoder and decoder of one of :data:`NETWORKS`.

    ``encoder_out`` defaults to ``latent_dim``; a Gaussian encoder asks for ``2 * latent_dim``.
    ``filters``: the convolutions' base filters (default: the network's, 128 for the paper's);
    ``center``: map x to 2x − 1 in the encoder (default: as the reference network does).
    """
    if network not in NETWORKS:
        raise RaekitError(f"unknown network {network!r}; choose one of {sorted(NETWORKS)}")
    if width < 1:
        raise RaekitError(f"width must be a positive integer divisor of the channels, got {width}")
    if latent_dim < 1:
        raise RaekitError(f"latent_dim must be ≥ 1, got {latent_dim}")
    if filters is not None and filters < 1:
        raise RaekitError(f"filters must be ≥ 1, got {filters}")
    spec = NETWORKS[network]
    encoder = ConvEncoder(spec, channels, encoder_out or latent_dim, width, center=center,
                          filters=filters)
    decoder = ConvDecoder(spec, channels, latent_dim, width, filters=filters)
    return encoder, decoder


def network_for_size(image_size: int) -> str:
    """The paper's network for square images of this size."""
    for name, spec in NETWORKS.items():
        if spec.image_size == image_size:
            return name
    raise RaekitError(
        f"no built-in network for {image_size}×{image_size} images; the networks take "
        + ", ".join(f"{s.image_size}×{s.image_size} ({n})" for n, s in NETWORKS.items())
        + " — resize your images (image_size=…) or pass your own encoder/decoder"
    )


# ----------------------------------------------------------------------------- a user's networks

USER_NETWORK_CONTRACT = (
    "a function f(*, channels, image_size, latent_dim, encoder_out) returning (encoder, decoder): "
    "nn.Modules with encoder (B, channels, image_size, image_size) → (B, encoder_out) and "
    "decoder (B, latent_dim) → (B, channels, image_size, image_size) in [0, 1]")


def is_user_network(name: str) -> bool:
    """``package.module:function`` or ``path/to/file.py:function``."""
    module, sep, function = name.rpartition(":")
    return bool(sep and module and function.isidentifier())


def user_network_function(name: str):
    """The function that ``network=package.module:function`` (or ``file.py:function``) names."""
    import importlib
    import importlib.util
    from pathlib import Path

    module_name, _, function = name.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            if not path.is_file():
                raise RaekitError(f"network {name!r}: no such file {path}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except RaekitError:
        raise
    except Exception as e:  # the user's module failed to import: say which and why, in a line
        raise RaekitError(f"network {name!r}: cannot import {module_name} "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                          ) from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise RaekitError(f"network {name!r}: {module_name} has no function {function!r}")
    return fn


def build_user_networks(name: str, *, channels: int, image_size: int, latent_dim: int,
                        encoder_out: int | None = None) -> tuple[nn.Module, nn.Module]:
    """A user's encoder and decoder (``network=package.module:function``), checked on a batch
    of two images against :data:`USER_NETWORK_CONTRACT`."""
    encoder_out = encoder_out or latent_dim
    fn = user_network_function(name)
    try:
        made = fn(channels=channels, image_size=image_size, latent_dim=latent_dim,
                  encoder_out=encoder_out)
    except Exception as e:  # the user's function raised: one line, with the contract
        raise RaekitError(f"network {name!r} raised {type(e).__name__}: {e}; the contract is "
                          f"{USER_NETWORK_CONTRACT}") from None
    if not (isinstance(made, (tuple, list)) and len(made) == 2
            and all(isinstance(m, nn.Module) for m in made)):
        raise RaekitError(f"network {name!r} returned {type(made).__name__}, not (encoder, "
                          f"decoder); the contract is {USER_NETWORK_CONTRACT}")
    encoder, decoder = made
    x = torch.rand(2, channels, image_size, image_size)
    with torch.no_grad():
        try:
            z = encoder(x)
            x_hat = decoder(torch.zeros(2, latent_dim))
        except Exception as e:  # a shape mismatch inside the user's modules
            raise RaekitError(f"network {name!r} failed on a batch of two images "
                              f"({type(e).__name__}: {str(e).splitlines()[0]}); the contract is "
                              f"{USER_NETWORK_CONTRACT}") from None
    problems = []
    if not isinstance(z, torch.Tensor) or tuple(z.shape) != (2, encoder_out):
        problems.append(f"the encoder gave {tuple(getattr(z, 'shape', ()))}, expected "
                        f"(2, {encoder_out})")
    if not isinstance(x_hat, torch.Tensor) or tuple(x_hat.shape) != tuple(x.shape):
        problems.append(f"the decoder gave {tuple(getattr(x_hat, 'shape', ()))}, expected "
                        f"{tuple(x.shape)}")
    if problems:
        raise RaekitError(f"network {name!r}: " + "; ".join(problems) + f" (the contract is "
                          f"{USER_NETWORK_CONTRACT})")
    return encoder, decoder
