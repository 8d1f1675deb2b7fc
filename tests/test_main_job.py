"""The main job: a training run ends with the pictures of the method and a summary; batch-norm
statistics match the weights; logs are readable in a file; trackers, nodes, PNG samples and a
user's own networks reach the library."""

import argparse
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from raekit.cli import main
from raekit.files import load_torch
from raekit.pictures import epoch_curves, read_metrics
from raekit.training.callbacks import recompute_batch_norm
from raekit.training.config import build_config
from raekit.training.trainer import make_trainer, train

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "epochs=3", "width=4", "progress=false", f"out={out}", "name=r"]) == 0
    return out / "r"


def test_a_run_ends_with_the_pictures_of_the_method(finished):
    for name in ("reconstructions.png", "samples-gmm-seed0.png", "interpolations.png",
                 "curves.png"):
        with Image.open(finished / name) as im:
            assert im.size[0] > 100 and im.size[1] > 30, name
    # the samples come from the GMM fitted on the training codes, stored with the run
    assert (finished / "densities" / "gmm.pt").is_file()


def test_the_summary_gives_the_best_epoch_and_its_held_out_terms(finished):
    s = json.loads((finished / "summary.json").read_text())
    rows = read_metrics(finished / "logs" / "metrics.csv")
    val = [r for r in rows if "val_loss" in r]
    best = min(val, key=lambda r: r["val_loss"])
    assert s["best_epoch"] == int(best["epoch"]) + 1 and s["epochs"] == 3
    assert s["val_at_best"]["rec"] == pytest.approx(best["val_rec"])
    last_train = [r for r in rows if "train_rec_epoch" in r][-1]
    assert s["rec_held_out_over_train"] == pytest.approx(val[-1]["val_rec"]
                                                         / last_train["train_rec_epoch"])
    assert s["batch_norm"]["precise"] and s["batch_norm"]["images"] == 1498
    assert load_torch(finished / "model.pt")["epoch"] == int(best["epoch"])


def test_the_curves_are_the_logged_epoch_means(finished):
    rows = read_metrics(finished / "logs" / "metrics.csv")
    curves = epoch_curves(rows)
    assert [e for e, _ in curves["rec"]["val"]] == [1, 2, 3]
    train_rec = [r["train_rec_epoch"] for r in rows if "train_rec_epoch" in r]
    assert [v for _, v in curves["rec"]["train"]] == train_rec
    assert [v for _, v in curves["lr"]["lr"]] == pytest.approx([5e-4] * 3)
    assert set(curves) >= {"loss", "rec", "latent", "reg", "lr"}


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.01))
        self.power = nn.utils.parametrizations.spectral_norm(nn.Linear(4, 4))

    def reconstruct(self, x):
        return self.power(self.body(x))


def test_precise_batch_norm_is_the_average_of_batch_statistics():
    torch.manual_seed(0)
    net = TinyNet()
    batches = [torch.randn(50, 3) * 3 + 1 for _ in range(4)]
    with torch.no_grad():  # expected: mean of the batches' means and unbiased variances
        h = [net.body[0](b) for b in batches]
        mean = torch.stack([x.mean(0) for x in h]).mean(0)
        var = torch.stack([x.var(0, unbiased=True) for x in h]).mean(0)
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running_" not in k}
    rng = torch.get_rng_state()
    recompute_batch_norm(net, batches)
    bn = net.body[1]
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.momentum == 0.01 and net.training  # settings and mode restored
    for k, v in weights.items():  # weights and the spectral norm's vectors untouched
        assert torch.equal(net.state_dict()[k], v), k
    assert torch.equal(torch.get_rng_state(), rng)


def test_precise_batch_norm_brings_held_out_error_down(tmp_path):
    from raekit.training import load_run
    from raekit.training.trainer import evaluate_loss

    errors = {}
    for precise in (False, True):
        cfg = build_config(None, dict(epochs=4, width=4, progress=False, out=str(tmp_path),
                                      name=f"p{precise}", precise_bn=precise))
        run = load_run(train(cfg))
        errors[precise] = evaluate_loss(run.load_model(), run.splits.val)["rec"]
    assert errors[True] < 0.8 * errors[False], errors


def test_piped_output_is_one_line_per_epoch_and_quiet_is_quiet(tmp_path):
    cmd = [sys.executable, "-m", "raekit.cli", "train", "epochs=3", "width=4", f"out={tmp_path}"]
    r = subprocess.run([*cmd, "name=a"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert [ln.split()[:2] for ln in lines] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                ["epoch", "3/3"]], r.stderr
    assert "\r" not in r.stderr and "best epoch" in r.stdout and "next:" in r.stdout
    q = subprocess.run([*cmd, "name=b", "--quiet"], capture_output=True, text=True, env=ENV,
                       timeout=300)
    assert q.returncode == 0 and q.stderr == "" and "best epoch" in q.stdout


def test_progress_bars_only_for_a_terminal(monkeypatch):
    from raekit.cli.options import no_progress_bars

    quiet, loud = argparse.Namespace(quiet=True), argparse.Namespace(quiet=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert no_progress_bars(quiet) and not no_progress_bars(loud)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert no_progress_bars(loud) and no_progress_bars(loud, {"epochs": 3})
    assert not no_progress_bars(loud, {"progress": True})  # asked for explicitly
    assert no_progress_bars(quiet, {"progress": True})


def test_tensorboard_receives_the_curves_and_the_pictures(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = build_config(None, dict(epochs=2, width=4, progress=False, out=str(tmp_path),
                                  name="tb", logger="tensorboard"))
    run = train(cfg)
    acc = EventAccumulator(str(run / "logs" / "tensorboard")).Reload()
    assert {"reconstructions", "samples_gmm"} <= set(acc.Tags()["images"])
    assert len(acc.Images("reconstructions")) == 2  # one per epoch
    assert "val_loss" in acc.Tags()["scalars"]


@pytest.mark.parametrize("tracker,module", [("wandb", "wandb"), ("mlflow", "mlflow")])
def test_other_trackers_write_offline_into_the_run(tmp_path, tracker, module):
    pytest.importorskip(module)
    if module == "mlflow":
        pytest.importorskip("sqlalchemy")
    cfg = build_config(None, dict(epochs=1, width=4, progress=False, out=str(tmp_path),
                                  name=tracker, logger=tracker))
    run = train(cfg)
    if tracker == "wandb":
        assert list((run / "wandb").glob("offline-run-*"))
    else:
        pngs = sorted(p.parent.name for p in (run / "mlruns").rglob("*.png"))
        assert pngs == ["reconstructions", "samples_gmm"]


def test_an_unknown_or_missing_tracker_is_one_line(tmp_path, capsys):
    assert main(["train", "logger=neptune", f"out={tmp_path}"]) == 2
    assert "logger must be one of csv, tensorboard, wandb, mlflow" in capsys.readouterr().err


def test_num_nodes_reaches_lightning(tmp_path):
    cfg = build_config(None, dict(num_nodes=2, devices="1", strategy="ddp", accelerator="cpu",
                                  out=str(tmp_path)))
    trainer = make_trainer(cfg, tmp_path)
    assert trainer.num_nodes == 2 and trainer.world_size == 2


def test_sample_png_dir_writes_one_png_per_sample(finished, tmp_path):
    npz, pngs = tmp_path / "s.npz", tmp_path / "pngs"
    assert main(["sample", str(finished), "-n", "12", "--npz", str(npz),
                 "--png-dir", str(pngs)]) == 0
    names = sorted(p.name for p in pngs.iterdir())
    assert names == [f"sample-{i:05d}.png" for i in range(12)]
    images = np.load(npz)["images"]  # (12, 1, 8, 8) in [0, 1]
    for i, name in enumerate(names):
        with Image.open(pngs / name) as im:
            assert im.mode == "L"
            expected = np.round(np.clip(images[i, 0], 0, 1) * 255).astype(np.uint8)
            np.testing.assert_array_equal(np.asarray(im), expected)
    assert main(["sample", str(finished), "-n", "2", "--png-dir", str(pngs)]) == 2


USER_NETWORKS = textwrap.dedent("""
    from torch import nn

    def mlp(*, channels, image_size, latent_dim, encoder_out):
        n = channels * image_size * image_size
        encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, 32), nn.ReLU(),
                                nn.Linear(32, encoder_out))
        decoder = nn.Sequential(nn.Linear(latent_dim, 32), nn.ReLU(), nn.Linear(32, n),
                                nn.Sigmoid(), nn.Unflatten(1, (channels, image_size, image_size)))
        return encoder, decoder

    class ViewingEncoder(nn.Module):
        # convolutions, then a view that needs contiguous activations

        def __init__(self, channels, image_size, out):
            super().__init__()
            self.convs = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(8 * image_size * image_size, out)

        def forward(self, x):
            h = self.convs(x)
            return self.fc(h.view(h.shape[0], -1))

    def convs(*, channels, image_size, latent_dim, encoder_out):
        _, decoder = mlp(channels=channels, image_size=image_size, latent_dim=latent_dim,
                         encoder_out=encoder_out)
        return ViewingEncoder(channels, image_size, encoder_out), decoder

    def wrong(*, channels, image_size, latent_dim, encoder_out):
        return mlp(channels=channels, image_size=image_size, latent_dim=latent_dim,
                   encoder_out=encoder_out + 1)
""")


def test_a_users_network_function_builds_the_model(tmp_path, capsys):
    path = tmp_path / "mynets.py"
    path.write_text(USER_NETWORKS)
    out = tmp_path / "runs"
    assert main(["train", f"network={path}:mlp", "epochs=1", "progress=false", f"out={out}",
                 "name=mine"]) == 0
    state = load_torch(out / "mine" / "model.pt")["state_dict"]
    assert state["encoder.1.weight"].shape == (32, 64)
    # a network of one's own trains in the layout it is written for (raekit's own networks
    # train channels-last on the CPU; this one's view would fail on such activations)
    assert main(["train", f"network={path}:convs", "epochs=1", "progress=false", f"out={out}",
                 "name=convs"]) == 0
    capsys.readouterr()
    # a broken contract is a one-line error naming it; an unknown function is refused before
    # any data is read
    assert main(["train", f"network={path}:wrong", f"out={out}", "name=wrong"]) == 2
    err = capsys.readouterr().err
    assert "the encoder gave (2, 9), expected (2, 8)" in err and "contract" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["train", f"network={path}:nope", "dataset=mnist", "data_root=/nowhere",
                 f"out={out}"]) == 2
    assert "has no function 'nope'" in capsys.readouterr().err
