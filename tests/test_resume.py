"""Resume loses nothing: ``last.ckpt`` is the end of every finished epoch, a run killed at any
moment resumes to exactly the run it would have been, and no file is ever left half-written."""

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from ports import keras_plateau

from raekit.cli import main
from raekit.files import load_torch
from raekit.models import registry
from raekit.training.trainer import plateau_scheduler, train

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
ARGS = ["epochs=4", "width=4", "batch_size=50", "progress=false"]  # 30 steps an epoch
STEPS_PER_EPOCH = 30


class WorseOnValidation(torch.nn.Module):
    """A real model whose *validation* loss rises with every training step taken, so that the
    best epoch is the first and every later one is worse."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.register_buffer("steps", torch.zeros(()))

    def encode(self, x):
        return self.inner.encode(x)

    def decode(self, z):
        return self.inner.decode(z)

    def reconstruct(self, x):
        return self.inner.reconstruct(x)

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.steps += 1
        else:
            out["loss"] = out["loss"] + self.steps
        return out


def test_last_checkpoint_is_the_last_epoch_when_validation_gets_worse(tiny_cfg, monkeypatch):
    entry = registry.MODELS["rae-l2"]
    monkeypatch.setitem(registry.MODELS, "rae-l2", registry.ModelEntry(
        lambda cfg, shape: WorseOnValidation(entry.build(cfg, shape)), entry.weights, ""))
    run = train(tiny_cfg(epochs=4, batch_size=50))
    last, best = (load_torch(run / "checkpoints" / f"{n}.ckpt") for n in ("last", "best"))
    assert (last["epoch"], last["global_step"]) == (3, 4 * STEPS_PER_EPOCH)
    assert (best["epoch"], best["global_step"]) == (0, STEPS_PER_EPOCH)
    assert load_torch(run / "model.pt")["epoch"] == 0  # model.pt holds the best weights


@pytest.mark.parametrize("patience", [1, 3, 5])
def test_plateau_follows_keras(patience):
    rng = np.random.default_rng(patience)
    # losses near 1e-2 that keep improving by less than min_delta = 1e-4 with small rebounds
    losses = list(0.02 - np.cumsum(rng.uniform(0, 3e-5, 40)) + rng.normal(0, 1e-5, 40))
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = plateau_scheduler(opt, factor=0.5, patience=patience, min_delta=1e-4, mode="keras")
    ours = []
    for loss in losses:
        sched.step(loss)
        ours.append(opt.param_groups[0]["lr"])
    expected = keras_plateau(losses, 1e-3, 0.5, patience, 1e-4)
    assert ours == pytest.approx(expected, rel=1e-12)
    assert min(expected) < 1e-3  # the sequence does reach the plateau


def test_torch_plateau_is_the_relative_threshold_named_option():
    def lrs(mode, losses):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = plateau_scheduler(opt, factor=0.5, patience=1, min_delta=1e-4, mode=mode)
        out = []
        for loss in losses:
            sched.step(loss)
            out.append(opt.param_groups[0]["lr"])
        return out

    # improvements of 1e-5 near 1e-2: above torch's relative 1e-4 (1e-6), below Keras' 1e-4
    creeping = [0.01, 0.00999, 0.00998, 0.00997]
    assert lrs("torch", creeping) == [1.0, 1.0, 1.0, 1.0]
    assert lrs("keras", creeping) == [1.0, 0.5, 0.25, 0.125]
    # torch drops after patience + 1 epochs without improvement, Keras after patience
    assert lrs("torch", [0.01, 0.01, 0.01]) == [1.0, 1.0, 0.5]


DRIVER = textwrap.dedent("""
    import io, os, signal, sys
    import torch
    from lightning.pytorch.callbacks import Callback
    import raekit.files
    from raekit.training.config import build_config
    from raekit.training.trainer import train

    where, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = build_config(None, dict(epochs=4, width=4, batch_size=50, progress=False, out=out,
                                  name=name, download=False))
    die = lambda: os.kill(os.getpid(), signal.SIGINT if where == "interrupt" else signal.SIGKILL)

    class Kill(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, i):
            if where in ("training", "interrupt") and trainer.current_epoch == 2 and i == 13:
                die()

        def on_validation_batch_end(self, trainer, module, outputs, batch, i, dl=0):
            if where == "validation" and trainer.current_epoch == 2 and i == 1:
                die()

    real_save = torch.save

    def half_written_save(obj, f, *args, **kwargs):
        # killed while last.ckpt of epoch 2 is being written: half of its bytes are on disk
        if where == "checkpoint" and ".last.ckpt." in str(f) and obj.get("epoch") == 2:
            buf = io.BytesIO()
            real_save(obj, buf)
            with open(f, "wb") as fh:
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            die()
        real_save(obj, f, *args, **kwargs)

    raekit.files.torch.save = half_written_save
    try:
        train(cfg, callbacks=[Kill()])
    except Exception as e:  # Ctrl-C: raekit says how to continue
        print(e, file=sys.stderr)
        sys.exit(130)
""")


def readable(path: Path) -> None:
    """Open a run directory's file as what it claims to be; raise if it is not whole."""
    if path.suffix in (".ckpt", ".pt"):
        assert isinstance(load_torch(path), dict)
    elif path.suffix == ".json":
        assert isinstance(json.loads(path.read_text()), dict)
    elif path.suffix == ".yaml":
        assert isinstance(yaml.safe_load(path.read_text()), dict)
    elif path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        assert rows and all(None not in r and None not in r.values() for r in rows)
    elif path.suffix == ".png":
        with Image.open(path) as im:
            im.verify()
    else:
        raise AssertionError(f"unexpected file {path}")


def epochs_logged(run: Path) -> list[int]:
    rows = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    return [int(float(r["epoch"])) for r in rows if r.get("val_loss")]


def val_losses(run: Path) -> list[float]:
    rows = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    return [float(r["val_loss"]) for r in rows if r.get("val_loss")]


def train_steps(run: Path) -> list[int]:
    rows = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    return [int(r["step"]) for r in rows if r.get("train_loss_step")]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert main(["train", *ARGS, f"out={out}", "name=whole"]) == 0
    return out / "whole"


@pytest.mark.parametrize("where", ["training", "validation", "checkpoint", "interrupt"])
def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_run(where, whole_run, tmp_path):
    """SIGKILL during a training epoch, during validation, while last.ckpt is being written; and
    Ctrl-C (SIGINT) during an epoch, which saves the interrupted epoch's state."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    r = subprocess.run([sys.executable, str(driver), where, str(tmp_path), "killed"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    run = tmp_path / "killed"
    last = load_torch(run / "checkpoints" / "last.ckpt")
    if where == "interrupt":
        assert r.returncode == 130 and "raekit train --resume" in r.stderr, r.stderr[-2000:]
        assert (last["epoch"], last["global_step"]) == (2, 2 * STEPS_PER_EPOCH + 14)
    else:
        assert r.returncode == -9, r.stderr[-2000:]  # killed, not finished
        assert last["epoch"] == 1  # epoch 2 was interrupted: the last finished one is epoch 1
    if where == "checkpoint":
        assert list((run / "checkpoints").glob(".last.ckpt.*.tmp"))  # the half-written file

    assert main(["train", "--resume", str(run)]) == 0
    assert epochs_logged(run) == epochs_logged(whole_run) == [0, 1, 2, 3]
    steps = train_steps(run)
    assert steps == sorted(set(steps)) == train_steps(whole_run)  # each step logged once
    final, whole = (load_torch(r / "checkpoints" / "last.ckpt") for r in (run, whole_run))
    assert final["global_step"] == whole["global_step"] == 4 * STEPS_PER_EPOCH
    # optimizer, schedule and random generators were restored: the same run, number for number
    assert val_losses(run) == pytest.approx(val_losses(whole_run), rel=1e-5)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")]
    for path in files:
        readable(path)


def test_files_get_the_permissions_the_umask_gives(tiny_cfg):
    old = os.umask(0o022)
    try:
        run = train(tiny_cfg(epochs=1))
    finally:
        os.umask(old)
    for path in (run / "model.pt", run / "config.yaml", run / "checkpoints" / "last.ckpt",
                 run / "logs" / "metrics.csv", run / "reconstructions.png"):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_generation_needs_only_the_run_directory(tmp_path, capsys):
    data = tmp_path / "digits.npz"
    from sklearn.datasets import load_digits

    x = np.round(load_digits().images * (255 / 16)).astype(np.uint8)
    np.savez(data, x=x)
    out = tmp_path / "runs"
    assert main(["train", "dataset=npz", f"data_root={data}", "epochs=1", "width=4",
                 "progress=false", f"out={out}", "name=npz"]) == 0
    run = out / "npz"
    assert main(["fit-density", str(run), "--density", "gaussian"]) == 0
    data.unlink()
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "8", "--density", "gaussian"]) == 0
    assert main(["interpolate", str(run), "--pairs", "2"]) == 0
    assert (run / "samples-gaussian-seed0.png").is_file()
    assert (run / "interpolations-val.png").is_file()
    capsys.readouterr()
    assert main(["reconstruct", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raekit: error:") and str(data) in err
    assert len(err.strip().splitlines()) == 1
