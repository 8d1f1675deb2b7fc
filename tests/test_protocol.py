"""The evaluation protocol (issue 12): the reference code's choices, each checked against a value
computed here from the reference's formula — sampled reconstructions (z = μ + σ·ε, and through
both stages of a 2-stage VAE), the REC images' split, truncation to 8 bits, the N and GMM
densities of each model, the interpolation pairs — and raekit's choices as options."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from raekit.densities import DENSITIES, TwoStageVAEDensity
from raekit.errors import RaekitError
from raekit.evaluation import EvalSettings
from raekit.evaluation import protocol as P
from raekit.evaluation.evaluate import column_densities, generated_sets
from raekit.models import VAE, Autoencoder
from raekit.pictures import to_uint8
from raekit.sampling import reconstruct

D, PIX = 3, 16  # code size, pixels of a 1×4×4 image


def nets(out_factor=2, seed=0):
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(PIX, out_factor * D))
    dec = nn.Sequential(nn.Linear(D, PIX), nn.Sigmoid(), nn.Unflatten(1, (1, 4, 4)))
    return enc, dec


def images(n, seed=0):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))



def by_hand_vae_draw(model, x, seed):
    """The reference's sampler written out: log σ = 5·tanh(dense), z = μ + exp(log σ)·ε."""
    h = model.encoder(x)
    mu, raw = h[:, :D], h[:, D:]
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed))
    return mu + torch.exp(5 * torch.tanh(raw)) * eps


# ----------------------------------------------------------------------------- reconstructions


def test_vae_reconstructions_are_draws_of_the_posterior_and_mu_on_request():
    model = VAE(*nets(), kl_weight=1.0).eval()
    x = images(10)
    with torch.no_grad():
        want = model.decoder(by_hand_vae_draw(model, x, seed=5))
        mean = model.decoder(model.encoder(x)[:, :D])
    torch.testing.assert_close(reconstruct(model, x, sample=True, seed=5), want)
    torch.testing.assert_close(reconstruct(model, x), mean)
    assert not torch.allclose(want, mean, atol=1e-3)  # the draw is not μ


def test_cv_vae_draws_with_its_constant_sigma():
    model = VAE(*nets(out_factor=1), kl_weight=1.0, sigma=0.7).eval()
    x = images(10)
    eps = torch.randn(10, D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model.decoder(model.encoder(x) + 0.7 * eps)
    torch.testing.assert_close(reconstruct(model, x, sample=True, seed=2), want)


def test_a_deterministic_autoencoder_reconstructs_the_same_either_way():
    model = Autoencoder(*nets(out_factor=1)).eval()
    x = images(10)
    torch.testing.assert_close(reconstruct(model, x, sample=True, seed=1), reconstruct(model, x))


def test_two_stage_vae_reconstructs_through_both_stages(one_thread):
    model = VAE(*nets(), kl_weight=1.0, default_density="two-stage").eval()
    x = images(12)
    codes = torch.randn(200, D, generator=torch.Generator().manual_seed(0)) * 2 + 1
    second = TwoStageVAEDensity(hidden=16, epochs=2, device="cpu").fit(codes)
    assert second.reconstructs and not DENSITIES["prior"].reconstructs
    # predict_2stage written out: first-stage μ, standardised, a draw of the second stage's
    # posterior decoded, de-standardised, decoded by the first stage
    with torch.no_grad():
        mu1 = model.encoder(x)[:, :D].double().numpy()
        u = torch.as_tensor((mu1 - second.mean_) / second.scale_, dtype=torch.float32)
        h = second._vae.encoder(u)
        k = h.shape[1] // 2
        eps = torch.randn(len(x), k, generator=torch.Generator().manual_seed(3))
        u2 = second._vae.decoder(h[:, :k] + torch.exp(5 * torch.tanh(h[:, k:])) * eps)
        z = torch.as_tensor(u2.double().numpy() * second.scale_ + second.mean_,
                            dtype=torch.float32)
        want = model.decoder(z)
    got = reconstruct(model, x, sample=True, through=second, seed=3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(RaekitError, match="does not reconstruct"):
        reconstruct(model, x, sample=True, through=DENSITIES["prior"]().fit(codes))


# ----------------------------------------------------------------------------- 8 bits


def test_truncation_is_the_references_and_rounding_raekits():
    x = torch.cat([torch.rand(1000, generator=torch.Generator().manual_seed(0)),
                   torch.tensor([-0.5, 0.0, 0.999, 1.0, 1.7, 128.6 / 255])])
    ref = (np.clip(x.numpy(), 0, 1) * 255).astype("uint8")  # the reference's save_set_of_images
    np.testing.assert_array_equal(to_uint8(x, method="truncate").numpy(), ref)
    np.testing.assert_array_equal(to_uint8(x).numpy(),
                                  np.round(np.clip(x.numpy(), 0, 1) * 255).astype("uint8"))
    assert to_uint8(torch.tensor([128.6 / 255]), method="truncate").item() == 128
    assert to_uint8(torch.tensor([128.6 / 255])).item() == 129
    with pytest.raises(RaekitError, match="quantisation"):
        to_uint8(x, method="ceil")


# ----------------------------------------------------------------------------- protocol choices


def test_auto_takes_the_reference_on_the_papers_datasets_and_raekits_elsewhere():
    ref = EvalSettings().choices("mnist", "rae-l2")
    assert ref == {"protocol": "reference", "reconstruction": "sampled", "rec_images": "val",
                   "quantisation": "truncate", "gmm_density": "dpgmm", "pairs": "reference"}
    assert EvalSettings().choices("digits", "rae-l2") == {
        "protocol": "raekit", "reconstruction": "mean", "rec_images": "paired",
        "quantisation": "round", "gmm_density": "gmm", "pairs": "distinct"}
    # one choice over the protocol
    s = EvalSettings(reconstruction="mean", gmm_density="gmm", quantisation="round")
    assert s.choices("mnist", "vae") == {**ref, "reconstruction": "mean", "gmm_density": "gmm",
                                         "quantisation": "round"}
    assert EvalSettings(protocol="reference").choices("digits", "ae")["gmm_density"] == "gmm"
    for bad in (dict(protocol="paper"), dict(rec_images="test"), dict(gmm_density="gmm2")):
        with pytest.raises(RaekitError):
            EvalSettings(**bad).validate()


# the reference's result notes (configurations/config.py): "GMM_Dirichlet FID is : …" or "GMM …"
NOTES = {("mnist", "vae"): "gmm", ("mnist", "cv-vae"): "dpgmm", ("mnist", "wae"): "dpgmm",
         ("mnist", "rae-gp"): "dpgmm", ("mnist", "rae-l2"): "dpgmm", ("mnist", "rae-sn"): "dpgmm",
         ("mnist", "rae"): "dpgmm", ("mnist", "ae"): "dpgmm",
         ("cifar10", "wae"): "gmm", ("cifar10", "cv-vae"): "gmm", ("cifar10", "rae-l2"): "gmm",
         ("cifar10", "rae-sn"): "gmm", ("cifar10", "rae"): "gmm", ("cifar10", "ae"): "gmm",
         ("celeba", "rae-gp"): "dpgmm", ("celeba", "rae-sn"): "dpgmm", ("celeba", "rae"): "dpgmm",
         ("celeba", "ae"): "dpgmm"}


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "celeba"])
@pytest.mark.parametrize("model", ["vae", "cv-vae", "wae", "2s-vae", "rae-gp", "rae-l2", "rae-sn",
                                   "rae", "ae"])
def test_reference_gmm_column_takes_the_estimator_of_the_published_number(dataset, model):
    got = EvalSettings().choices(dataset, model)["gmm_density"]
    assert got == NOTES.get((dataset, model), "gmm")
    assert EvalSettings(protocol="raekit").choices(dataset, model)["gmm_density"] == "gmm"


@pytest.mark.parametrize("model, n_density", [
    ("ae", "gaussian"), ("rae", "gaussian"), ("rae-l2", "gaussian"), ("rae-gp", "gaussian"),
    ("rae-sn", "gaussian"), ("cv-vae", "gaussian"), ("vae", "prior"), ("wae", "prior"),
    ("2s-vae", "two-stage")])
def test_n_column_density_of_each_model(tiny_cfg, model, n_density):
    from raekit.models.registry import build_model

    built = build_model(tiny_cfg(model=model), (1, 8, 8))
    choices = EvalSettings().choices("mnist", model)
    assert column_densities(built, choices) == {"N": n_density, "GMM": NOTES.get(("mnist", model),
                                                                               "gmm")}


# ----------------------------------------------------------------------------- interpolation pairs


def test_reference_pairs_are_drawn_as_the_reference_drew_them():
    state = np.random.get_state()
    try:
        np.random.seed(2)  # interpolation_fid_and_viz.py
        want = np.random.choice(list(range(50)) * 3, (60, 2), replace=False)
    finally:
        np.random.set_state(state)
    i, j = P.reference_pairs(50, 60, seed=2)
    np.testing.assert_array_equal(i.numpy(), want[:, 0])
    np.testing.assert_array_equal(j.numpy(), want[:, 1])
    counts = np.bincount(np.concatenate([i.numpy(), j.numpy()]), minlength=50)
    assert counts.max() <= 3  # each validation image at most three times over all pairs
    draws = [P.reference_pairs(4, 6, seed=seed) for seed in range(10)]
    assert any((i == j).any() for i, j in draws)  # an image may meet itself
    i, j = P.reference_pairs(10, 40, seed=0)  # more pairs than 3 copies allow: more copies
    assert len(i) == 40
    i, j = P.distinct_pairs(5, 200, seed=0)  # raekit's: never an image with itself
    assert (i != j).all() and len(i) == 200


# ----------------------------------------------------------------------------- the sets


class FakeRun:
    """What generated_sets reads of a run: the splits and fitted densities."""

    def __init__(self, model, val, test):
        self.splits = SimpleNamespace(val=val, test=test)
        self.train_codes = torch.randn(300, D, generator=torch.Generator().manual_seed(9))
        self.asked = []

    def density(self, name, model, **_):
        self.asked.append(name)
        return DENSITIES[name]().fit(self.train_codes)


def test_reference_sets_reconstruct_validation_images_sampled_and_truncated():
    model = VAE(*nets(), kl_weight=1.0).eval()
    val, test = images(40, seed=1), images(40, seed=2)
    run = FakeRun(model, val, test)
    n = 30
    reference = to_uint8(test[:n])
    s = EvalSettings(seed=4, batch_size=1000)
    sets = {name: (imgs, info) for name, imgs, info in
            generated_sets(run, model, n, reference, s, s.choices("mnist", "vae"))}
    with torch.no_grad():
        rec = model.decoder(by_hand_vae_draw(model, val[:n], seed=4)).numpy()
        mu = model.encoder(val)[:, :D]
        i, j = P.reference_pairs(len(val), n, seed=4)
        mid = model.decoder((mu[i] + mu[j]) / 2).numpy()
    np.testing.assert_array_equal(sets["REC"][0].numpy(),
                                  (np.clip(rec, 0, 1) * 255).astype("uint8"))
    assert sets["REC"][1]["images"] == "val" and sets["REC"][1]["reconstruction"] == "sampled"
    assert sets["N"][1]["density"] == "prior" and sets["GMM"][1]["density"] == "gmm"
    got = sets["Interp"][0].numpy().astype(int)
    want = (np.clip(mid, 0, 1) * 255).astype("uint8").astype(int)
    assert np.abs(got - want).max() <= 1  # float32 sums in another order: one level at most

    # raekit's: decoded μ of the test images themselves, rounded
    s = EvalSettings(protocol="raekit", batch_size=1000)
    rec_set = next(generated_sets(run, model, n, reference, s, s.choices("mnist", "vae")))
    with torch.no_grad():
        want = model.decoder(model.encoder(reference.float() / 255)[:, :D])
    np.testing.assert_array_equal(rec_set[1].numpy(), to_uint8(want).numpy())
    assert rec_set[2]["images"] == "paired"


# ----------------------------------------------------------------------------- commands


def test_evaluate_records_the_protocol(tiny_cfg, tmp_path, monkeypatch):
    from raekit.cli import main
    from raekit.training.trainer import train

    monkeypatch.setenv("RAEKIT_CACHE", str(tmp_path / "cache"))
    run = train(tiny_cfg(model="vae", kl_weight=0.05, epochs=1))
    argv = ["evaluate", str(run), "--fid", "off", "--num-samples", "32", "--domain-epochs", "2",
            "--prd-runs", "1", "--quiet", "--protocol", "reference", "--gmm-density", "dpgmm"]
    assert main(argv) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["protocol"] == {"protocol": "reference", "reconstruction": "sampled",
                             "rec_images": "val", "quantisation": "truncate",
                             "gmm_density": "dpgmm", "pairs": "reference"}
    assert m["sets"]["GMM"]["density"] == "dpgmm" and m["sets"]["N"]["density"] == "prior"
    assert m["sets"]["REC"]["source"].startswith("sampled reconstructions of 32 validation")
    assert (run / "densities" / "dpgmm.pt").is_file()
    # a dpgmm stored by an older raekit (max_iter=2000) is refused, not silently used
    from raekit.densities import make_density, save_density
    from raekit.training.run import load_run

    r = load_run(run)
    old = make_density("dpgmm", max_iter=2000).fit(torch.randn(60, r.latent_dim()))
    save_density(old, r.density_path("dpgmm"), model_digest=r.model_digest())
    with pytest.raises(RaekitError, match="max_iter=2000"):
        r.stored_density("dpgmm")


def test_reproduce_at_the_papers_scale_evaluates_with_the_reference_protocol(tmp_path,
                                                                             monkeypatch):
    import raekit.evaluation as evaluation
    import raekit.training as training
    from raekit.cli import main

    seen = []
    monkeypatch.setattr(training, "train", lambda cfg, resume=False: None)
    monkeypatch.setattr(evaluation, "evaluate_run", lambda run, s: seen.append(s) or {
        "run": str(run), "model": "rae", "dataset": "mnist", "num_images": 0, "networks": {},
        "sets": {}, "seconds": {"total": 0}})
    monkeypatch.setattr(evaluation, "write_table", lambda runs, prefix: (prefix, prefix, ""))
    argv = ["reproduce", "--dataset", "mnist", "--models", "rae", "--out", str(tmp_path),
            "--quiet"]
    assert main(argv) == 0
    assert seen[-1].protocol == "reference"
    assert main([*argv, "--protocol", "raekit"]) == 0
    assert seen[-1].protocol == "raekit"


def test_table_names_the_density_behind_each_number(tmp_path):
    from raekit.evaluation.table import write_table

    runs = []
    for model, gmm in (("rae-l2", "dpgmm"), ("vae", "gmm")):
        run = tmp_path / f"mnist-{model}"
        run.mkdir()
        sets = {c: {"fid": 10.0} for c in ("REC", "N", "GMM", "Interp")}
        sets["N"]["density"] = "gaussian" if model == "rae-l2" else "prior"
        sets["GMM"]["density"] = gmm
        (run / "metrics.json").write_text(json.dumps(
            {"run": str(run), "model": model, "dataset": "mnist", "num_images": 10000,
             "sets": sets, "protocol": {"protocol": "reference"}}))
        runs.append(run)
    _, csv_path, md = write_table(runs, tmp_path / "t")
    rae = [line for line in md.splitlines() if line.startswith("| RAE-L2 |")]
    assert rae[1] == "| RAE-L2 | gaussian (gaussian?) | dpgmm (dpgmm) |"
    vae = [line for line in md.splitlines() if line.startswith("| VAE |")]
    assert vae[1] == "| VAE | prior (prior?) | gmm (gmm) |"
    assert "protocol: reference" in md
    import csv

    rows = {(r["model"], r["column"]): r for r in csv.DictReader(open(csv_path))}
    assert rows[("rae-l2", "GMM")]["paper_density"] == "dpgmm"
    assert rows[("rae-l2", "GMM")]["density"] == "dpgmm"
    assert rows[("rae-l2", "REC")]["paper_density"] == ""


def test_published_density_is_named_only_where_the_notes_name_it():
    assert P.published_density("mnist", "rae-l2", "GMM") == ("dpgmm", True)
    assert P.published_density("cifar10", "rae-gp", "GMM") == ("gmm", False)  # notes silent
    assert P.published_density("celeba", "2s-vae", "N") == ("two-stage", False)
    assert P.published_density("mnist", "rae", "REC") is None
