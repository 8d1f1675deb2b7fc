"""The decoder's transposed convolution and batch norm with closed-form double backwards
(raekit.models.ops) against PyTorch's own F.conv_transpose2d and nn.BatchNorm2d: the same values
and the same first and second derivatives, which the exact gradient penalty differentiates."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raekit.models import ops
from raekit.models.ops import BatchNorm2d, conv_transpose2d

f64 = torch.float64


def penalty_grads(fn, x, params, weights_of_param_grads=False):
    """A gradient-penalty-shaped objective: differentiate a loss of fn(x) with respect to x
    (with its graph), then differentiate a loss of that gradient and of the output with
    respect to x and the parameters. With ``weights_of_param_grads`` the parameters' first
    gradients enter the objective too."""
    y = fn(x)
    wrt = (x, *params) if weights_of_param_grads else (x,)
    firsts = torch.autograd.grad((y.tanh() ** 2).sum(), wrt, create_graph=True)
    ramp = torch.linspace(0, 1, firsts[0].numel(), dtype=x.dtype).view_as(firsts[0])
    loss = (firsts[0].pow(2) * ramp).sum() + y.sin().sum()
    for i, g in enumerate(firsts[1:]):
        loss = loss + (g.pow(3) * (i + 1)).sum()
    return torch.autograd.grad(loss, (x, *params))


@pytest.mark.parametrize("kernel,stride,padding,out_channels,size", [
    (4, 2, 1, 3, 5), (4, 1, 1, 3, 5), (5, 2, 1, 3, 5), (5, 1, 2, 3, 5),
    (4, 1, 1, 1, 5),  # one output channel: input and weight gradients as patch products
    (4, 2, 1, 3, 2),  # a 2×2 input: the input gradient is a convolution with a 2×2 output
])
def test_conv_transpose2d_matches_pytorch_to_second_order(kernel, stride, padding, out_channels,
                                                          size):
    torch.manual_seed(0)
    x = torch.randn(3, 4, size, size, dtype=f64, requires_grad=True)
    w = torch.randn(4, out_channels, kernel, kernel, dtype=f64, requires_grad=True)
    b = torch.randn(out_channels, dtype=f64, requires_grad=True)
    ours = lambda x: conv_transpose2d(x, w, b, (stride, stride), (padding, padding))  # noqa: E731
    ref = lambda x: F.conv_transpose2d(x, w, b, stride, padding)  # noqa: E731
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)
    for a, r in zip(penalty_grads(ours, x, (w, b)), penalty_grads(ref, x, (w, b))):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: conv_transpose2d(x, w, b, (stride, stride), (padding, padding)),
        (x, w, b))


@pytest.mark.parametrize("kernel,padding", [(4, 1), (5, 1)])
def test_conv_transpose2d_with_phase_products_matches_pytorch_to_second_order(kernel, padding,
                                                                              monkeypatch):
    # as in bfloat16 on the CPU: the weight gradient and the penalty's second backward through
    # the input gradient (a strided convolution) are products of phases
    monkeypatch.setattr(ops, "_phases_pay", lambda *a, **k: True)
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5, dtype=f64, requires_grad=True)
    w = torch.randn(4, 3, kernel, kernel, dtype=f64, requires_grad=True)
    ours = lambda x: conv_transpose2d(x, w, None, (2, 2), (padding, padding))  # noqa: E731
    ref = lambda x: F.conv_transpose2d(x, w, None, 2, padding)  # noqa: E731
    for a, r in zip(penalty_grads(ours, x, (w,)), penalty_grads(ref, x, (w,))):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


CONV_CASES = [  # in_channels, size, kernel, stride, padding, takes the patch product
    (1, 7, 4, 1, 1, True),  # a single input channel
    (1, 8, 4, 2, 1, True),
    (3, 4, 4, 2, 1, True),  # a 2×2 output
    (5, 3, 3, 1, 0, True),  # a 1×1 output
    (3, 7, 3, 1, 1, False),  # neither: PyTorch's own convolution
]


@pytest.mark.parametrize("channels_last", [False, True])  # patches ordered as the weight is
@pytest.mark.parametrize("cin,size,kernel,stride,padding,patches", CONV_CASES)
def test_conv2d_matches_pytorch_to_second_order(cin, size, kernel, stride, padding, patches,
                                                channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, cin, size, size, dtype=f64).contiguous(memory_format=fmt)
    w = torch.randn(6, cin, kernel, kernel, dtype=f64).contiguous(memory_format=fmt)
    x, w = x.requires_grad_(), w.requires_grad_()
    b = torch.randn(6, dtype=f64, requires_grad=True)
    assert ops._patches_pay(x, (kernel, kernel), (stride, stride), (padding, padding)) == patches
    ours = lambda x: ops.conv2d(x, w, b, (stride, stride), (padding, padding))  # noqa: E731
    ref = lambda x: F.conv2d(x, w, b, stride, padding)  # noqa: E731
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)
    if cin > 1 and size > kernel:  # one channel or one pixel: both layouts are the same
        assert ops._channels_last(ours(x)) == ops._channels_last(ref(x)) == channels_last
    for a, r in zip(penalty_grads(ours, x, (w, b), True), penalty_grads(ref, x, (w, b), True)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cin,size,kernel,stride,padding,patches", CONV_CASES)
def test_conv2d_weight_gradient_matches_pytorch(cin, size, kernel, stride, padding, patches,
                                               channels_last):
    torch.manual_seed(0)
    x = torch.randn(2, cin, size, size, dtype=f64)
    shape = (6, cin, kernel, kernel)
    out = (size + 2 * padding - kernel) // stride + 1
    g = torch.randn(2, 6, out, out, dtype=f64)
    if channels_last:
        g = g.contiguous(memory_format=torch.channels_last)
    ours = ops._conv2d_weight(x, torch.Size(shape), g, (stride, stride), (padding, padding))
    ref = torch.nn.grad.conv2d_weight(x, shape, g.contiguous(), stride, padding)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


PHASE_CASES = [  # input size (h, w), kernel, stride, padding
    ((16, 16), (4, 4), (2, 2), (1, 1)),  # the paper's 4×4, stride-2 "same" layers
    ((16, 16), (5, 5), (2, 2), (2, 2)),
    ((17, 15), (5, 5), (2, 2), (1, 1)),  # rows left over; padding past one side
    ((12, 10), (4, 3), (2, 3), (1, 2)),  # unequal strides and paddings
    ((9, 11), (3, 4), (3, 3), (0, 0)),
    ((8, 8), (1, 1), (2, 2), (0, 0)),  # a kernel smaller than the stride: one phase has taps
    ((8, 8), (4, 4), (1, 1), (1, 1)),  # stride 1: one phase
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size,kernel,stride,padding", PHASE_CASES)
def test_weight_by_phases_matches_pytorch(size, kernel, stride, padding, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 4, *size, dtype=f64)
    out = [(size[i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(2)]
    g = torch.randn(3, 5, *out, dtype=f64)
    if channels_last:
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    shape = torch.Size((5, 4, *kernel))
    ours = ops._weight_by_phases(x, shape, g, stride, padding)
    ref = torch.nn.grad.conv2d_weight(x.contiguous(), shape, g.contiguous(), stride, padding)
    assert ours.shape == shape
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_phases_pay_for_bfloat16_big_channels_and_small_outputs_with_amx(monkeypatch):
    x = torch.empty(2, 512, 16, 16)  # → an 8×8 output at stride 2
    monkeypatch.setattr(ops, "_has_amx", lambda: False)
    assert not ops._phases_pay(x.bfloat16(), (1024, 512, 4, 4), (2, 2), (1, 1))  # not measured
    monkeypatch.setattr(ops, "_has_amx", lambda: True)
    big, args = (1024, 512, 4, 4), ((2, 2), (1, 1))
    assert ops._phases_pay(x.bfloat16(), big, *args)
    assert ops._phases_pay(x, big, *args, torch.bfloat16)  # under bfloat16 autocast
    assert not ops._phases_pay(x, big, *args)  # float32: oneDNN's primitive
    assert not ops._phases_pay(x.bfloat16(), (256, 128, 4, 4), *args)  # few channels
    assert not ops._phases_pay(torch.empty(2, 512, 32, 32).bfloat16(), big, *args)  # 16×16 out
    assert not ops._phases_pay(x.bfloat16(), big, (1, 1), (1, 1))  # not strided


@pytest.mark.parametrize("size,kernel,stride,padding", PHASE_CASES[:4])
def test_conv2d_with_phase_weight_gradients_matches_pytorch_to_second_order(
        size, kernel, stride, padding, monkeypatch):
    monkeypatch.setattr(ops, "_phases_pay", lambda *a, **k: True)
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size, dtype=f64, requires_grad=True)
    w = torch.randn(4, 3, *kernel, dtype=f64, requires_grad=True)
    b = torch.randn(4, dtype=f64, requires_grad=True)
    ours = lambda x: ops.conv2d(x, w, b, stride, padding)  # noqa: E731
    ref = lambda x: F.conv2d(x, w, b, stride, padding)  # noqa: E731
    assert ours(x).grad_fn.name().startswith("_Conv2d")
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)
    for a, r in zip(penalty_grads(ours, x, (w, b), True), penalty_grads(ref, x, (w, b), True)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: ops.conv2d(x, w, b, stride, padding), (x, w, b))


def test_conv2d_phase_weight_gradient_under_bfloat16_autocast(monkeypatch):
    torch.manual_seed(0)
    x = torch.rand(2, 256, 16, 16).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(512, 256, 4, 4) * 0.02).requires_grad_()
    b = torch.zeros(512, requires_grad=True)
    g = torch.randn(2, 512, 8, 8)
    monkeypatch.setattr(ops, "_has_amx", lambda: True)  # the phases, whatever this CPU is
    assert ops._phases_pay(x, w.shape, (2, 2), (1, 1), torch.bfloat16)
    grads = {}
    for name, conv in [("ours", ops.conv2d), ("pytorch", F.conv2d)]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x, w, b, (2, 2), (1, 1))
        assert y.dtype == torch.bfloat16
        grads[name] = torch.autograd.grad((y.float() * g).sum(), (w, b))
    assert [t.dtype for t in grads["ours"]] == [torch.float32, torch.float32]
    exact = torch.nn.grad.conv2d_weight(x.double(), w.shape, g.double(), 2, 1)
    scale = exact.abs().max()
    # both round x and g to bfloat16 and accumulate in float32 (512 terms a weight)
    assert (grads["ours"][0].double() - exact).abs().max() < 0.02 * scale
    assert (grads["ours"][0] - grads["pytorch"][0]).abs().max() < 0.02 * scale
    # y's gradient reaches the convolution rounded to bfloat16; the bias sums it in float32
    exact_b = g.bfloat16().double().sum((0, 2, 3))
    torch.testing.assert_close(grads["ours"][1].double(), exact_b, rtol=1e-5, atol=1e-5)


def test_conv2d_patch_product_under_bfloat16_autocast():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 12, 12)
    w = torch.randn(8, 1, 4, 4) * 0.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = ops.conv2d(x, w, None, (1, 1), (1, 1))
        ref = F.conv2d(x, w, None, 1, 1)
    assert ours.dtype == ref.dtype == torch.bfloat16
    exact = F.conv2d(x.double(), w.double(), None, 1, 1)
    # both round x and w to bfloat16, accumulate in float32 and round the result
    torch.testing.assert_close(ours.double(), ref.double(), rtol=0, atol=2 ** -7 * 2)
    assert (ours.double() - exact).abs().max() < 0.05 * exact.abs().max()


@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_sums_accumulate_in_float32(channels_last):
    torch.manual_seed(0)
    t = (torch.rand(8, 3, 32, 32) + 1).to(torch.bfloat16)  # 8,192 terms of ~1.5 a channel
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    exact = t.double().sum((0, 2, 3))
    sums = ops._channel_sums(t)
    assert sums.dtype == torch.float32
    # float32 accumulates 8,192 terms to ~1e-4 here; a bfloat16 sum would be off by tens
    torch.testing.assert_close(sums.double(), exact, rtol=1e-6, atol=1e-3)


def test_conv_transpose2d_skips_the_weight_gradient_a_backward_does_not_need(monkeypatch):
    calls = []
    real = ops.conv2d_weight
    monkeypatch.setattr(ops, "conv2d_weight", lambda *a, **k: calls.append(1) or real(*a, **k))
    w = torch.randn(4, 3, 4, 4, requires_grad=True)
    z = torch.randn(2, 4, 5, 5, requires_grad=True)
    h = z * 2  # the decoder's input is never a leaf
    y = conv_transpose2d(h, w, None, (2, 2), (1, 1))
    (gz,) = torch.autograd.grad(y.pow(2).sum(), z, create_graph=True)  # the penalty's pass
    assert calls == []
    (gz.pow(2).sum() + y.sum()).backward()  # the training step's pass needs it
    assert calls == [1] and w.grad is not None and w.grad.abs().sum() > 0


def _pair(momentum=0.1, affine=True):
    torch.manual_seed(1)
    ours = BatchNorm2d(3, eps=1e-3, momentum=momentum, affine=affine).double()
    if affine:
        with torch.no_grad():
            ours.weight.uniform_(0.5, 2.0)
            ours.bias.uniform_(-1.0, 1.0)
    ref = nn.BatchNorm2d(3, eps=1e-3, momentum=momentum, affine=affine).double()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("param_grads_in_loss", [False, True])
def test_batch_norm_matches_pytorch_to_second_order(param_grads_in_loss):
    ours, ref = _pair()
    x = torch.randn(4, 3, 5, 5, dtype=f64, requires_grad=True)
    a = penalty_grads(ours, x, (ours.weight, ours.bias), param_grads_in_loss)
    r = penalty_grads(ref, x, (ref.weight, ref.bias), param_grads_in_loss)
    for u, v in zip(a, r):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-9)
    # both took one training batch: the same running statistics
    torch.testing.assert_close(ours.running_mean, ref.running_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=0, atol=1e-12)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 1


def test_batch_norm_second_derivative_passes_gradgradcheck():
    ours, _ = _pair()
    x = torch.randn(3, 3, 4, 4, dtype=f64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: ours(x), (x,))


@pytest.mark.parametrize("momentum,affine", [(None, True), (0.01, False)])
def test_batch_norm_cumulative_average_and_no_affine_as_pytorch(momentum, affine):
    ours, ref = _pair(momentum, affine)
    x = torch.randn(4, 3, 5, 5, dtype=f64, requires_grad=True)
    for _ in range(3):
        a = penalty_grads(ours, x, ())
        r = penalty_grads(ref, x, ())
    torch.testing.assert_close(a[0], r[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=0, atol=1e-12)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)


def test_batch_norm_channels_last_and_bf16_autocast_follow_pytorch():
    ours, ref = _pair()
    ours, ref = ours.float(), ref.float()
    x = torch.randn(8, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)

    def under_autocast(m):
        def fn(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return m(F.conv2d(x, torch.ones(3, 3, 1, 1) / 3))
        return fn

    a = penalty_grads(under_autocast(ours), x, (ours.weight, ours.bias))
    r = penalty_grads(under_autocast(ref), x, (ref.weight, ref.bias))
    for u, v in zip(a, r):
        assert u.dtype == v.dtype == torch.float32
        # bfloat16 carries 8 bits: agree to a few of its units in the last place
        torch.testing.assert_close(u, v, rtol=0.05, atol=0.05 * v.abs().max().item())


def test_nets_use_them_with_nn_batchnorm_state():
    from raekit.models.nets import build_networks

    enc, dec = build_networks("conv32", channels=1, latent_dim=4, width=16)
    bns = [m for m in dec.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, BatchNorm2d) for m in bns)
    keys = set(dec.state_dict())
    assert {"blocks.1.running_mean", "blocks.1.num_batches_tracked", "blocks.1.weight"} <= keys


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_matches_pytorch_to_second_order(inplace):
    torch.manual_seed(2)
    x = torch.randn(4, 3, 5, 5, dtype=f64, requires_grad=True)
    w = torch.randn(3, 3, 1, 1, dtype=f64, requires_grad=True)

    def net(relu):  # the ReLU between two layers, so that in-place acts on an inner tensor
        return lambda x: F.conv2d(relu(F.conv2d(x, w)), w)

    a = penalty_grads(net(ops.ReLU(inplace=inplace)), x, (w,))
    r = penalty_grads(net(nn.ReLU(inplace=inplace)), x, (w,))
    for u, v in zip(a, r):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(net(ops.ReLU(inplace=inplace)), (x,))
    with torch.no_grad():
        torch.testing.assert_close(net(ops.ReLU(inplace=inplace))(x), net(nn.ReLU())(x))
