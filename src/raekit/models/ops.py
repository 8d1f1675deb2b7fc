"""Layers of the paper's networks that take the fast paths on the CPU, each computing what
PyTorch's own does: a transposed convolution, batch norm and ReLU whose second derivatives are
fast, and a convolution that is a matrix product of patches where oneDNN's direct algorithm is
slow (:func:`conv2d`). Where oneDNN's weight-gradient primitive is slow (bfloat16 on a CPU with
AMX, an output of at most 8×8 pixels), the weight gradients of both convolutions are products
of the input's phases, one per kernel tap (:func:`_weight_by_phases`).

The exact gradient penalty (:class:`~raekit.models.regularizers.GradientPenalty`) differentiates
the decoder's input gradient ``∂D/∂z`` with respect to the decoder's weights: a double backward.
For a transposed convolution ``y = convT(x, W)`` the input gradient is the convolution
``g_x = conv(g_y, W)``, and PyTorch's derivative of that input gradient
(``ConvolutionBackwardBackward0``, ``_convolution_double_backward``) forms its weight term by
convolving the batch-transposed tensors: a "convolution" whose kernel is the whole 16×16 or 32×32
feature map, which oneDNN runs at a fraction of its speed (on a 2-core Xeon, float32, the full-width
MNIST decoder: 0.85 s and 0.51 s a step for the two big layers, about half of the exact penalty's
extra cost over an L2 step).

:func:`conv_transpose2d` computes the same values with one difference in the graph: its backward
writes the input gradient as an ordinary differentiable ``F.conv2d(g_y, W)``, so the penalty's
second backward is that convolution's first backward — oneDNN's weight-gradient primitive, the
one every training step uses. Its weight gradient is computed only when the running backward
pass needs it (``loss.backward()``, not ``autograd.grad(…, z)``), as PyTorch's own nodes do.

:class:`BatchNorm2d` is ``nn.BatchNorm2d`` (same arguments, state and first derivative: the
fused ``native_batch_norm_backward``) with the derivative of its input gradient written out in
closed form: five per-channel sums and two outputs, each a combination of three tensors.
PyTorch's composite formula for the same (``batchnorm_double_backward``) makes some forty
full-size temporaries: on the full-width MNIST decoder, float32, 0.45 s and 0.22 s a step for the
[100, 256, 32, 32] and [100, 512, 16, 16] layers, where one forward and backward costs 0.08 and
0.04 s. :class:`ReLU` drops a tensor of zeros from its double backward.

Which gradients a backward pass needs is asked of the autograd engine
(``torch._C._will_engine_execute_node``, which ``torch.autograd.graph`` uses for the same
purpose); should a PyTorch release lack it, every gradient is computed.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch._prims_common import suggest_memory_format
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv2d_weight


def _engine_needs(ctx, index: int) -> bool:
    """Whether the running backward pass uses the gradient of the Function's input ``index``."""
    if not ctx.needs_input_grad[index]:
        return False
    node = ctx.next_functions[index][0]
    if node is None:
        return False
    try:
        return torch._C._will_engine_execute_node(node)
    except (AttributeError, RuntimeError):  # not asked in this PyTorch: compute it
        return True


class _ConvTranspose2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        ctx.bias_dtype = None if bias is None else bias.dtype
        device = x.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device),
                        torch.get_autocast_dtype(device))
        return F.conv_transpose2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        device, enabled, dtype = ctx.autocast
        grad_x = grad_w = grad_b = None
        # the forward's autocast, differentiably: a double backward reaches the fp32 weight
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            if _engine_needs(ctx, 0):  # in x's memory format
                grad_x = conv2d(grad_y, weight, None, ctx.stride, ctx.padding,
                                memory_format=suggest_memory_format(x))
        if _engine_needs(ctx, 1):
            # ⟨g_y, convT(x, W)⟩ = ⟨conv(g_y, W), x⟩: the weight gradient of conv(g_y → x)
            cast = dtype if enabled else grad_y.dtype
            grad_w = _conv2d_weight(grad_y.to(cast), weight.shape, x.to(cast), ctx.stride,
                                    ctx.padding)
        if _engine_needs(ctx, 2):
            grad_b = _channel_sums(grad_y).to(ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, None


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: tuple[int, int] = (1, 1),
                     padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``F.conv_transpose2d`` (no output padding, dilation or groups) with a fast double
    backward; see the module's docstring."""
    return _ConvTranspose2d.apply(_node(x), _node(weight), _node(bias), tuple(stride),
                                  tuple(padding))


# ------------------------------------------------------------------ convolution as patches


def _patches_pay(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, int],
                 padding: tuple[int, int]) -> bool:
    """Whether a convolution runs faster as a product of patches than as oneDNN's direct one.

    On the CPU oneDNN's direct algorithm blocks channels by SIMD width and output pixels by
    tiles, and two shapes of the paper's networks fill neither: a single input channel (the
    MNIST encoder's first layer, and the input gradient of the decoder's last one: f+b 124 ms
    against 44 ms as patches, bfloat16, batch 100 at 32×32 → 256 channels, 2-core Xeon) and an
    output of at most 2×2 pixels (the encoder's last layer: 181 against 47 ms at 512 → 1024).
    Elsewhere the direct algorithm is as fast or faster, and on a GPU cuDNN is left to choose.
    """
    if x.device.type != "cpu" or x.dim() != 4:
        return False
    out = _out_size(x, kernel, stride, padding)
    return x.shape[1] == 1 or out[0] * out[1] <= 4


def _out_size(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, int],
              padding: tuple[int, int]) -> list[int]:
    return [(x.shape[-2 + i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(2)]


def _patches(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, int],
             padding: tuple[int, int], channels_inner: bool = False
             ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """The (N·oh·ow, C·kh·kw) matrix of x's patches (im2col), and (N, oh, ow); a row is
    ordered (C, kh, kw) as a weight's (out, in, kh, kw) is in memory, or with
    ``channels_inner`` (kh, kw, C) as a channels-last weight is."""
    if padding[0] or padding[1]:
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    p = x.unfold(2, kernel[0], stride[0]).unfold(3, kernel[1], stride[1])  # N, C, oh, ow, kh, kw
    n, c, oh, ow = p.shape[:4]
    p = p.permute(0, 2, 3, 4, 5, 1) if channels_inner else p.permute(0, 2, 3, 1, 4, 5)
    return p.reshape(n * oh * ow, -1), (n, oh, ow)


class _Conv2d(torch.autograd.Function):
    """``F.conv2d`` whose weight gradient is :func:`_weight_by_phases`; its input gradient is
    PyTorch's, and both are differentiable."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.bias = stride, padding, bias is not None
        device = x.device.type
        ctx.cast = (torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device)
                    else None)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        cast = ctx.cast or grad_y.dtype  # the forward's autocast, differentiably
        g, x, w = grad_y.to(cast), x.to(cast), weight.to(cast)
        grad_x = grad_w = grad_b = None
        if _engine_needs(ctx, 0):
            grad_x = torch.ops.aten.convolution_backward(
                g, x, w, None, ctx.stride, ctx.padding, (1, 1), False, (0, 0), 1,
                [True, False, False])[0]
        if _engine_needs(ctx, 1):
            grad_w = _weight_by_phases(x, weight.shape, g, ctx.stride, ctx.padding)
        if ctx.bias and _engine_needs(ctx, 2):
            grad_b = _channel_sums(g)
        return grad_x, grad_w, grad_b, None, None


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0), *,
           memory_format: torch.memory_format | None = None) -> torch.Tensor:
    """``F.conv2d`` (no dilation or groups), as one matrix product of x's patches where that
    is faster (:func:`_patches_pay`). The product's result is in ``memory_format``, by default
    the one PyTorch's convolution would give (channels-last when x or the weight is): mixing
    formats slows every later elementwise pass. Every operation is an ordinary
    differentiable one, so its derivatives of any order are PyTorch's. Where products of phases
    pay (:func:`_phases_pay`), the weight gradient is computed as those (:class:`_Conv2d`)."""
    stride, padding = tuple(stride), tuple(padding)
    device = x.device.type
    cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    if not _patches_pay(x, weight.shape[-2:], stride, padding):
        if torch.is_grad_enabled() and _phases_pay(x, weight.shape, stride, padding, cast):
            return _Conv2d.apply(_node(x), _node(weight), _node(bias), stride, padding)
        return F.conv2d(x, weight, bias, stride, padding)
    x = x.to(cast)  # under autocast, cast x before it is copied into patches
    # the weight as an (out, in·kh·kw) matrix without a copy, and the patches in its order
    inner = _channels_last(weight)
    cols, (n, oh, ow) = _patches(x, weight.shape[-2:], stride, padding, inner)
    w = (weight.permute(0, 2, 3, 1) if inner else weight).reshape(weight.shape[0], -1).t()
    y = (cols @ w if bias is None else torch.addmm(bias, cols, w)).view(n, oh, ow, -1)
    y = y.permute(0, 3, 1, 2)  # the product is channels-last in memory
    if memory_format is None:
        cl = _channels_last(x) or _channels_last(weight)
        memory_format = torch.channels_last if cl else torch.contiguous_format
    return y.contiguous(memory_format=memory_format)


def _channels_last(t: torch.Tensor) -> bool:
    """Whether PyTorch takes 4-d ``t`` to be channels-last (a single channel is ambiguous in
    strides alone; ``suggest_memory_format`` settles it as the convolutions do)."""
    return t.dim() == 4 and suggest_memory_format(t) == torch.channels_last


def _conv2d_weight(x: torch.Tensor, weight_shape: torch.Size, grad_y: torch.Tensor,
                   stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """The weight gradient of ``conv2d(x, W)`` for an upstream gradient ``grad_y``
    (``torch.nn.grad.conv2d_weight``), as a product of patches where :func:`conv2d` uses them
    and as products of phases where those pay (:func:`_phases_pay`)."""
    if _phases_pay(x, weight_shape, stride, padding):
        return _weight_by_phases(x, weight_shape, grad_y, stride, padding)
    if not _patches_pay(x, weight_shape[-2:], stride, padding):
        return conv2d_weight(x, weight_shape, grad_y, stride, padding)
    cols, _ = _patches(x, weight_shape[-2:], stride, padding)
    n, c = grad_y.shape[:2]
    if _channels_last(grad_y):  # rows are (N·oh·ow, C_out)
        return (grad_y.permute(0, 2, 3, 1).reshape(-1, c).t() @ cols).view(weight_shape)
    # (C_out, oh·ow) @ (oh·ow, C·kh·kw) per image, without copying grad_y into rows
    return torch.bmm(grad_y.reshape(n, c, -1), cols.view(n, -1, cols.shape[1])).sum(0).view(
        weight_shape)


def _phases_pay(x: torch.Tensor, weight_shape: tuple[int, ...], stride: tuple[int, int],
                padding: tuple[int, int], dtype: torch.dtype | None = None) -> bool:
    """Whether a strided convolution's weight gradient runs faster as products of phases
    (:func:`_weight_by_phases`) than as oneDNN's weight-gradient primitive, computing in
    ``dtype`` (default x's).

    That primitive blocks the output's pixels, and an output of at most 8×8 leaves its
    reduction short. In bfloat16 on a 2-core Xeon with AMX, batch 100: the full-width MNIST
    decoder's first transposed convolution (whose weight gradient is that of a convolution from
    16×16×512 to 8×8×1024) takes 185 ms against 100 ms as phases, the encoder's third
    convolution (8×8×256 → 4×4×512) 28 against 10 ms, the decoder's 512 → 256 at width 2 44
    against 25 ms; with 128 × 256 channels or a 16×16 output oneDNN is as fast or faster, and in
    float32 it is faster at every shape measured. Only measured where the CPU has AMX (whose
    bfloat16 matrix products the phases ride on): elsewhere oneDNN's primitive is kept.
    """
    out = _out_size(x, weight_shape[-2:], stride, padding)
    return (x.device.type == "cpu" and x.dim() == 4 and min(stride) > 1
            and (dtype or x.dtype) == torch.bfloat16 and out[0] * out[1] <= 64
            and weight_shape[0] * weight_shape[1] >= 512 * 256 and _has_amx())


@functools.cache
def _has_amx() -> bool:
    """Whether this CPU has AMX tiles (PyTorch's own check; False where a release lacks it)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def _phase_grid(size: int, out: int, kernel: int, stride: int, padding: int) -> tuple[int, list]:
    """One spatial dimension of :func:`_weight_by_phases`: the grid's length and, per kernel
    tap, its (phase, shift) in the grid."""
    taps = [divmod(k - padding, stride)[::-1] for k in range(kernel)]  # (phase, shift)
    grid = max(out, -(-size // stride))
    for phase in {p for p, _ in taps}:
        shifts = [s for p, s in taps if p == phase]
        count = -(-(size - phase) // stride)  # the input's pixels in this phase
        grid = max(grid, out + max(shifts), count - min(shifts))
    return grid, taps


def _weight_by_phases(x: torch.Tensor, weight_shape: torch.Size, grad_y: torch.Tensor,
                      stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """The weight gradient of a strided ``conv2d(x, W)`` as one matrix product per kernel tap.

    Tap (a, b) pairs output pixel (i, j) with input pixel (s·i + a − p, s·j + b − p): in the
    input's phase (a − p) mod s, the pixel (i + ⌊(a − p)/s⌋, …). Both the upstream gradient and
    each phase of the input are laid out, channels last and zero-padded, on one grid of rows of
    ``grid`` pixels, long enough that every shifted pixel either falls in the grid or lands on
    padding; a tap is then a product of two row ranges of these matrices, offset by its shift
    — no copy per tap. The padding costs (grid/out)² extra multiply-adds (81/64 for an 8×8
    map), the layout two passes over the tensors."""
    (n, cin, h, w), (cout, (kh, kw)) = x.shape, (grad_y.shape[1], weight_shape[-2:])
    oh, ow = grad_y.shape[2:]
    gh, taps_h = _phase_grid(h, oh, kh, stride[0], padding[0])
    gw, taps_w = _phase_grid(w, ow, kw, stride[1], padding[1])
    rows = n * gh * gw
    # x's phases: [s_h, s_w, rows, C_in]; the upstream gradient: [rows, C_out]
    xs = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, stride[1] * gw - w, 0, stride[0] * gh - h))
    xs = xs.view(n, gh, stride[0], gw, stride[1], cin).permute(2, 4, 0, 1, 3, 5)
    xs = xs.reshape(stride[0], stride[1], rows, cin)
    g = F.pad(grad_y.permute(0, 2, 3, 1), (0, 0, 0, gw - ow, 0, gh - oh)).reshape(rows, cout)
    out = []
    for pa, sa in taps_h:
        for pb, sb in taps_w:
            d = sa * gw + sb
            lo, hi = max(0, -d), rows - max(0, d)
            out.append(g[lo:hi].t() @ xs[pa, pb, lo + d:hi + d])
    out = torch.stack(out).view(kh, kw, cout, cin).permute(2, 3, 0, 1)
    return out.contiguous(memory_format=suggest_memory_format(x))


def _fused_sums(t: torch.Tensor, u: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor,
                both: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Σ t and (``both``) Σ t·(u − centre)·scale per channel (dimension 1): the fused
    batch-norm backward kernel's Σ g_y and Σ g_y·x̂, accumulated in float32 without
    materialising a product, in either memory format."""
    _, s_tu, s_t = torch.ops.aten.native_batch_norm_backward(
        t, u, torch.ones_like(scale), None, None, centre, scale, True, 0.0, [False, both, True])
    return s_t, s_tu


def _channel_sums(t: torch.Tensor) -> torch.Tensor:
    """Σ over all but dimension 1, accumulated in float32 in either memory format (a bfloat16
    ``t.sum((0, 2, 3))`` of an NCHW tensor first converts it: 33 against 5 ms at [100, 256,
    32, 32])."""
    c, wide = t.shape[1], torch.promote_types(t.dtype, torch.float32)
    one, zero = t.new_ones(c, dtype=wide), t.new_zeros(c, dtype=wide)
    return _fused_sums(t, t, zero, one, both=False)[0]


def _node(t: torch.Tensor | None) -> torch.Tensor | None:
    """A leaf that requires grad as a view of itself: the engine can say whether it will run a
    view's node in ``autograd.grad`` (not a leaf's accumulator)."""
    if t is not None and t.requires_grad and t.grad_fn is None:
        return t.view_as(t)
    return t


# --------------------------------------------------------------------------------- batch norm


class _BatchNormTrain(torch.autograd.Function):
    """Batch norm with batch statistics; its backward is :class:`_BatchNormBackward`."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var,
                                                  True, momentum, eps)
        ctx.save_for_backward(x, weight)
        ctx.mean, ctx.invstd, ctx.eps = mean, invstd, eps
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        mask = tuple(_engine_needs(ctx, i) for i in range(3))
        grads = _BatchNormBackward.apply(grad_y, x, weight, ctx.mean, ctx.invstd, ctx.eps, mask)
        return (*grads, None, None, None, None)


class _BatchNormBackward(torch.autograd.Function):
    """(g_y, x, γ) → (g_x, g_γ, g_β) of batch norm, with a closed-form derivative.

    Per channel, with n elements, r = 1/√(var + ε), x̂ = (x − μ)·r, m(·) the channel mean and
    P(v) = v − m(v) − x̂·m(v·x̂) (self-adjoint): g_x = γ·r·P(g_y), g_γ = Σ g_y·x̂, g_β = Σ g_y.
    For upstream gradients A (of g_x), a_γ, a_β, using dx̂ = r·P(dx) and dr = −(r²/n)·Σ x̂·dx:

        ∂/∂g_y = γ·r·P(A) + a_γ·x̂ + a_β
        ∂/∂x   = γ·r²·[(3·m(Ax̂)·m(g_y·x̂) − m(A·g_y) + m(A)·m(g_y))·x̂ − m(g_y·x̂)·P'(A)
                 − m(Ax̂)·P'(g_y)] + a_γ·r·P(g_y),   P'(v) = v − m(v)
        ∂/∂γ   = r·(Σ A·g_y − m(g_y)·Σ A − m(g_y·x̂)·Σ A·x̂)
    """

    @staticmethod
    def forward(ctx, grad_y, x, weight, mean, invstd, eps, mask):
        # the kernel forms Σ g_y·x̂ and Σ g_y for g_x anyway: keep them for the backward
        g_x, s_gx, s_g = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True, eps, [mask[0], True, True])
        ctx.save_for_backward(grad_y, x, weight)
        ctx.mean, ctx.invstd, ctx.eps, ctx.sums = mean, invstd, eps, (s_g, s_gx)
        return g_x, s_gx if mask[1] else None, s_g if mask[2] else None

    @staticmethod
    @once_differentiable
    def backward(ctx, a_x, a_weight, a_bias):
        # The five sums come from the fused batch-norm backward kernel (it accumulates
        # Σ g and Σ g·(x − μ)·r per channel in float32 without materialising a product); each
        # output is one tensor written once and updated in place, x̂ folded into x's
        # coefficient. Full-size tensors stay in the activations' dtype (bfloat16 under
        # autocast), the per-channel coefficients in float32 or wider.
        grad_y, x, weight = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        n = x.numel() // x.shape[1]
        mean, invstd = ctx.mean, ctx.invstd
        wide = torch.promote_types(invstd.dtype, torch.float32)
        ones = torch.ones_like(invstd)

        def sums(t, u, centre=mean, scale=invstd):
            """Σ t and Σ t·(u − centre)·scale per channel."""
            s_t, s_tu = _fused_sums(t, u, centre, scale)
            return s_t.to(wide).view(shape), s_tu.to(wide).view(shape)

        g = grad_y.to(x.dtype)
        r, mu = invstd.to(wide).view(shape), mean.to(wide).view(shape)
        gamma = weight.to(wide).view(shape) if weight is not None else torch.ones_like(r)
        zero = torch.zeros_like(r)
        s_g, s_gx = (s.to(wide).view(shape) for s in ctx.sums)
        m_g, m_gx = s_g / n, s_gx / n  # m(g_y), m(g_y·x̂)
        if a_x is not None:
            a = a_x.to(x.dtype)
            # γ·r·P(A), ∂/∂g_y's term in A, is batch norm's own input gradient for A: the fused
            # kernel forms it and the sums Σ A·x̂, Σ A in two passes
            bn_a, s_ax, s_a = torch.ops.aten.native_batch_norm_backward(
                a, x, weight, None, None, mean, invstd, True, ctx.eps, [True, True, True])
            s_a, s_ax = s_a.to(wide).view(shape), s_ax.to(wide).view(shape)
            _, s_ag = sums(a, g, torch.zeros_like(mean), ones)
            m_a, m_ax, m_ag = s_a / n, s_ax / n, s_ag / n
        else:
            a, m_a, m_ax, m_ag = None, zero, zero, zero
        a_gamma = a_weight.to(wide).view(shape) if a_weight is not None else zero
        a_beta = a_bias.to(wide).view(shape) if a_bias is not None else zero
        gr2 = gamma * r * r

        def narrow(c):  # a per-channel coefficient in the activations' dtype
            return c.to(x.dtype)

        # ∂/∂g_y = γ·r·P(A) + a_γ·x̂ + a_β, x̂ = r·x − r·μ
        out_g = bn_a if a is not None else None
        if a_weight is not None or a_bias is not None or a is None:
            affine = torch.addcmul(narrow(a_beta - a_gamma * r * mu), x, narrow(a_gamma * r))
            out_g = affine if out_g is None else out_g.add_(affine)
        # ∂/∂x = c_x̂·x̂ + c_a·a + c_g·g_y + c_0
        c_xhat = gr2 * (3 * m_ax * m_gx - m_ag + m_a * m_g) - a_gamma * r * m_gx
        c_0 = gr2 * (m_gx * m_a + m_ax * m_g) - a_gamma * r * m_g
        out_x = torch.addcmul(narrow(c_0 - c_xhat * r * mu), x, narrow(c_xhat * r))
        out_x.addcmul_(g, narrow(a_gamma * r - gr2 * m_ax))
        if a is not None:
            out_x.addcmul_(a, narrow(-gr2 * m_gx))
        out_w = None
        if weight is not None and a is not None:
            out_w = (r * n * (m_ag - m_g * m_a - m_gx * m_ax)).flatten().to(weight.dtype)
        return (out_g.to(grad_y.dtype), out_x, out_w, None, None, None, None)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with a fast double backward (see the module's docstring): the same
    arguments, parameters, buffers and running-statistics updates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        self._check_input_dim(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        running = self.track_running_stats
        return _BatchNormTrain.apply(
            _node(x), _node(self.weight), _node(self.bias), self.running_mean if running else None,
            self.running_var if running else None, momentum, self.eps)


# ---------------------------------------------------------------------------------------- ReLU


class _ReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, inplace):
        if inplace:
            ctx.mark_dirty(x)
            y = x.relu_()
        else:
            y = x.relu()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return _ReLUBackward.apply(grad_y, y), None


class _ReLUBackward(torch.autograd.Function):
    """g_x = g_y·[y > 0]: linear in g_y, and the mask has no gradient."""

    @staticmethod
    def forward(ctx, grad_y, y):
        ctx.save_for_backward(y)
        return torch.ops.aten.threshold_backward(grad_y, y, 0)

    @staticmethod
    @once_differentiable
    def backward(ctx, a):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(a, y, 0), None


class ReLU(nn.ReLU):
    """``nn.ReLU`` whose input gradient's derivative is only the masked upstream gradient.
    PyTorch's (``ThresholdBackwardBackward0``) also returns a full-size tensor of zeros for
    the mask's input, which the engine then allocates, fills and adds into the layer's
    gradient: three wasted passes over the activation a penalty step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return super().forward(x)
        return _ReLU.apply(x, self.inplace)
