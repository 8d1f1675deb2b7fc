"""Training end to end on the bundled digits: learning, DDP, resume, reload."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raekit.cli import main
from raekit.data import first_images
from raekit.errors import DivergenceError
from raekit.files import load_torch
from raekit.models import registry as zoo
from raekit.training.run import load_run
from raekit.training.trainer import evaluate_loss, train

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "raekit.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def val_losses(run_dir):
    with open(Path(run_dir) / "logs" / "metrics.csv") as f:
        return [float(r["val_loss"]) for r in csv.DictReader(f) if r["val_loss"]]


def optimizer_steps(ckpt_path):
    ckpt = load_torch(ckpt_path)
    adam_steps = {float(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert len(adam_steps) == 1
    return ckpt["global_step"], int(adam_steps.pop())


def test_rae_l2_training_lowers_validation_reconstruction_error(tiny_cfg):
    cfg = tiny_cfg(width=1, epochs=6, batch_size=25)
    torch.manual_seed(0)
    untrained = zoo.build_model(cfg, (1, 8, 8))
    run_dir = train(cfg)
    run = load_run(run_dir)
    before = evaluate_loss(untrained, run.splits.val)["rec"]
    after = evaluate_loss(run.load_model(), run.splits.val)["rec"]
    assert after < 0.4 * before, (before, after)


def test_run_directory_reloads_and_reproduces_logged_validation_loss(tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "model=rae-gp", "epochs=2", "width=4", "batch_size=50", "progress=false",
                 f"out={out}", "name=gp"]) == 0
    run_dir = out / "gp"
    for name in ("config.yaml", "model.pt", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 "logs/metrics.csv", "reconstructions.png"):
        assert (run_dir / name).is_file(), name
    run = load_run(run_dir)
    assert run.config.model == "rae-gp" and run.config.reg_weight == 5e-8  # the digits preset
    logged = min(val_losses(run_dir))
    reproduced = evaluate_loss(run.load_model(), run.splits.val, batch_size=50)["loss"]
    assert abs(reproduced - logged) < 1e-5 * max(1.0, logged), (reproduced, logged)
    # a finished run is not overwritten by accident
    assert main(["train", "model=rae-gp", f"out={out}", "name=gp", "progress=false"]) == 2


def test_ddp_on_cpu_with_two_processes_writes_one_checkpoint(tmp_path):
    out = tmp_path / "runs"
    r = cli("train", "epochs=1", "width=4", "devices=2", "strategy=ddp", "accelerator=cpu",
            "progress=false", f"out={out}", "name=ddp")
    assert r.returncode == 0, r.stderr[-2000:]
    ckpts = sorted(p.name for p in (out / "ddp" / "checkpoints").iterdir())
    assert ckpts == ["best.ckpt", "last.ckpt"]
    assert (out / "ddp" / "model.pt").is_file()
    # each of the two processes saw half of the 1,498 training images: ceil(749 / 100) = 8 steps
    assert optimizer_steps(out / "ddp" / "checkpoints" / "last.ckpt") == (8, 8)


class Diverging(torch.nn.Module):
    """Wraps a real model; its loss becomes NaN from the 20th training call on."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def encode(self, x):
        return self.inner.encode(x)

    def decode(self, z):
        return self.inner.decode(z)

    def reconstruct(self, x):
        return self.inner.reconstruct(x)

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls > 20:
                out["loss"] = out["loss"] * float("nan")
        return out


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_cfg, monkeypatch):
    entry = zoo.MODELS["rae-l2"]
    monkeypatch.setitem(zoo.MODELS, "rae-l2", zoo.ModelEntry(
        lambda cfg, shape: Diverging(entry.build(cfg, shape)), entry.weights, entry.summary))
    cfg = tiny_cfg(epochs=3, batch_size=100)  # 15 steps an epoch: NaN at step 20, in epoch 1
    with pytest.raises(DivergenceError, match=r"at step 20 \(epoch 1"):
        train(cfg)
    last = load_torch(cfg.run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 15
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values()
               if v.is_floating_point())


def test_same_seed_same_run_other_seed_other_run(tiny_cfg):
    runs = [train(tiny_cfg(epochs=1, seed=s, name=f"s{s}-{i}"))
            for i, s in ((0, 7), (1, 7), (2, 8))]
    losses = [val_losses(r) for r in runs]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_channels_last_changes_the_layout_not_the_training(tiny_cfg, monkeypatch):
    from raekit.training.trainer import AutoencoderModule

    layouts = []
    record = AutoencoderModule.configure_optimizers

    def spy(self):
        opt = record(self)
        weight = self.model.decoder.blocks[0].weight  # a transposed convolution's kernel
        layouts.append((weight.is_contiguous(), opt.defaults["fused"]))
        return opt

    monkeypatch.setattr(AutoencoderModule, "configure_optimizers", spy)
    runs = [train(tiny_cfg(epochs=1, name="channels-last"))]
    monkeypatch.setattr(AutoencoderModule, "configure_model", lambda self: None)
    runs.append(train(tiny_cfg(epochs=1, name="contiguous")))
    assert layouts == [(False, True), (True, True)]  # channels-last, then not; fused Adam
    # the same steps in another summation order (a bias before batch norm has no gradient but
    # rounding, which Adam's first steps scale to ±lr: compare what the networks compute)
    loaded = [load_run(r) for r in runs]
    x = first_images(loaded[0].splits.val, 64)
    with torch.no_grad():
        outs = [run.load_model().eval().reconstruct(x) for run in loaded]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)  # 4e-7 here
    a, b = (val_losses(r) for r in runs)
    assert a == pytest.approx(b, rel=1e-5)


def test_two_stage_vae_trains_both_stages_in_one_command(tiny_cfg):
    from raekit.densities import load_density

    run_dir = train(tiny_cfg(model="2s-vae", width=8, epochs=1, stage2_epochs=2, stage2_hidden=32))
    density = load_density(run_dir / "densities" / "two-stage.pt")
    assert density.n_features_in_ == 8
    z = density.sample(500, seed=0)
    assert z.shape == (500, 8) and torch.isfinite(z).all()
