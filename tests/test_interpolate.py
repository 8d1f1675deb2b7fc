"""Interpolation between codes: endpoints, norms, great circles, shapes and bad input; slerp is
the reference code's formula (checked against it written out in numpy)."""

import math

import numpy as np
import pytest
import torch

from raekit.errors import RaekitError
from raekit.sampling import (
    INTERPOLATIONS,
    interpolate,
    linear,
    midpoints,
    norm_rescaled,
    slerp,
    slerp_norm,
)


def pair(seed=0, batch=(5,), d=16):
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(*batch, d, generator=g, dtype=torch.float64)
    z1 = 3 * torch.randn(*batch, d, generator=g, dtype=torch.float64)  # different norms
    return z0, z1


@pytest.mark.parametrize("method", list(INTERPOLATIONS))
def test_every_interpolation_keeps_its_endpoints(method):
    z0, z1 = pair()
    path = interpolate(z0, z1, 7, method=method)  # (7, 5, 16)
    assert path.shape == (7, 5, 16)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)


def reference_slerp(t, z0, z1):
    """The reference code's slerp (my_utility/interpolations.py), written out in numpy."""
    omega = np.arccos(np.clip(np.dot(z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)), -1, 1))
    if np.sin(omega) == 0:
        return (1 - t) * z0 + t * z1
    return np.sin((1 - t) * omega) / np.sin(omega) * z0 + np.sin(t * omega) / np.sin(omega) * z1


def test_slerp_is_the_reference_formula_on_raw_codes():
    z0, z1 = pair(3)  # norms differ by about 3×
    t = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    path = slerp(z0, z1, t)  # (5, 5, 16)
    for k, tk in enumerate(t.tolist()):
        for i in range(len(z0)):
            want = reference_slerp(tk, z0[i].numpy(), z1[i].numpy())
            np.testing.assert_allclose(path[k, i].numpy(), want, rtol=1e-12, atol=1e-12)
    mid = midpoints(z0, z1, method="slerp")
    np.testing.assert_allclose(mid[0].numpy(), reference_slerp(0.5, z0[0].numpy(), z1[0].numpy()),
                               rtol=1e-12)
    # not the norm-interpolating variant: the raw formula's midpoint norm is not the mean norm
    mean_norm = (z0.norm(dim=-1) + z1.norm(dim=-1)) / 2
    assert not torch.allclose(mid.norm(dim=-1), mean_norm, rtol=1e-3)
    torch.testing.assert_close(slerp_norm(z0, z1, 0.5).norm(dim=-1), mean_norm)
    # two unit vectors at 90°: the midpoint of the circle, as the formula gives by hand
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])
    torch.testing.assert_close(slerp(e1, e2, 0.5), torch.tensor([1.0, 3.0]) * math.sin(math.pi / 4))


def test_slerp_norm_interpolates_norms_and_moves_along_the_great_circle():
    z0, z1 = pair()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    path = slerp_norm(z0, z1, t)  # (11, 5, 16)
    n0, n1 = z0.norm(dim=-1), z1.norm(dim=-1)
    torch.testing.assert_close(path.norm(dim=-1), (1 - t)[:, None] * n0 + t[:, None] * n1)
    # constant angular speed: each step turns the direction by the same angle Ω/10
    u = path / path.norm(dim=-1, keepdim=True)
    step = torch.arccos((u[1:] * u[:-1]).sum(-1).clamp(-1, 1))  # (10, 5)
    omega = torch.arccos((z0 * z1).sum(-1) / (n0 * n1))
    torch.testing.assert_close(step, (omega / 10).expand_as(step))


@pytest.mark.parametrize("fn", [slerp, slerp_norm])
def test_slerp_of_orthogonal_unit_vectors_is_the_circle(fn):
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(fn(e1, e2, 0.5), torch.tensor([1.0, 1.0]) / math.sqrt(2))
    torch.testing.assert_close(fn(e1, e2, 1 / 3), torch.tensor([math.cos(math.pi / 6),
                                                                   math.sin(math.pi / 6)]))
    assert linear(e1, e2, 0.5).norm() == pytest.approx(1 / math.sqrt(2))  # the line dips inside


def test_norm_rescaled_midpoint_has_the_mean_norm_in_the_lines_direction():
    z0, z1 = pair(1)
    mid = midpoints(z0, z1, method="norm-rescaled")
    line = midpoints(z0, z1)
    torch.testing.assert_close(line, (z0 + z1) / 2)
    torch.testing.assert_close(mid.norm(dim=-1), (z0.norm(dim=-1) + z1.norm(dim=-1)) / 2)
    cos = (mid * line).sum(-1) / (mid.norm(dim=-1) * line.norm(dim=-1))
    torch.testing.assert_close(cos, torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(norm_rescaled(z0, z1, 0.25).norm(dim=-1),
                               0.75 * z0.norm(dim=-1) + 0.25 * z1.norm(dim=-1))


def test_parallel_and_zero_codes_stay_finite():
    z = torch.tensor([[1.0, 2.0, 3.0]])
    for a, b in ((z, 2 * z), (z, -z), (z, torch.zeros_like(z))):
        for fn in INTERPOLATIONS.values():
            out = fn(a, b, torch.linspace(0, 1, 5))
            assert torch.isfinite(out).all()
    torch.testing.assert_close(slerp(z, 2 * z, 0.5), 1.5 * z)
    torch.testing.assert_close(slerp_norm(z, 2 * z, 0.5), 1.5 * z)


def test_bad_input():
    z0, z1 = pair()
    with pytest.raises(RaekitError, match="same shape"):
        linear(z0, z1[:, :3], 0.5)
    with pytest.raises(RaekitError, match="steps"):
        interpolate(z0, z1, 1)
    with pytest.raises(RaekitError, match="unknown interpolation"):
        interpolate(z0, z1, 4, method="cubic")
    with pytest.raises(RaekitError, match="1-D"):
        slerp(z0, z1, torch.zeros(2, 2))
