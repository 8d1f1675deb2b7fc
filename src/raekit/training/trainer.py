"""Training on Lightning (Ghosh et al. 2020, appendix; reference code
``train_raes_vaes.py``): Adam, ReduceLROnPlateau(0.5, patience 5) on the
validation loss, the best-validation checkpoint, a CSV log, a progress bar, and whatever
devices/strategy/precision Lightning supports (DDP included, also on the CPU).

The Lightning module wraps *any* model whose ``forward(x)`` returns ``{"loss": …, terms…}``:
it never asks which model or regularizer it trains.

A run directory holds everything::

    RUN/config.yaml          the resolved config
    RUN/checkpoints/last.ckpt  written at the end of every epoch (and on Ctrl-C): --resume uses it
    RUN/checkpoints/best.ckpt  the best validation loss so far
    RUN/model.pt             config + best weights (loads with weights_only=True)
    RUN/logs/metrics.csv     per-step training and per-epoch validation metrics
    RUN/reconstructions.png  held-out images over their reconstructions
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from .. import __version__
from ..data import Splits, first_images, images_of, load_splits, loader
from ..errors import DivergenceError, RaekitError
from ..files import load_torch, save_text, save_torch
from ..models.base import evaluating, model_device
from ..models.registry import build_model
from ..pictures import save_grid
from .config import TrainConfig
from .run import CONFIG_FILE, FORMAT, MODEL_FILE, load_run


class AutoencoderModule(L.LightningModule):
    """Lightning wrapper of a model whose ``forward(x)`` returns a dict with ``"loss"``."""

    def __init__(self, model: nn.Module, *, lr: float, plateau_factor: float = 0.5,
                 plateau_patience: int = 5, config: dict[str, Any] | None = None):
        super().__init__()
        self.model = model
        self.lr, self.plateau_factor, self.plateau_patience = lr, plateau_factor, plateau_patience
        self.config = config or {}

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x = images_of(batch)
        out = self.model(x)
        loss = out["loss"]
        if not torch.isfinite(loss):
            terms = ", ".join(f"{k}={v.item():.4g}" for k, v in out.items() if v.numel() == 1)
            raise DivergenceError(
                f"the training loss became {loss.item()} at step {self.global_step} "
                f"(epoch {self.current_epoch}; {terms}); the last good checkpoint is kept — "
                "lower lr or the penalty weights and resume")
        self.log("train_loss", loss.detach(), prog_bar=True, batch_size=len(x))
        self.log_dict({f"train_{k}": v.detach() for k, v in out.items() if k != "loss"},
                      batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x = images_of(batch)
        out = self.model(x)
        self.log("val_loss", out["loss"].detach(), prog_bar=True, on_epoch=True, sync_dist=True,
                 batch_size=len(x))
        self.log_dict({f"val_{k}": v.detach() for k, v in out.items() if k != "loss"},
                      on_epoch=True, sync_dist=True, batch_size=len(x))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=self.plateau_factor, patience=self.plateau_patience)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss", "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["raekit"] = {"version": __version__, "format": FORMAT, "config": self.config}


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O (saved atomically through fsspec), loaded without unpickling
    code, with a one-line error for a corrupt or foreign file."""

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_torch(path, map_location=map_location or "cpu")


class InterruptCheckpoint(Callback):
    """On Ctrl-C, save ``last.ckpt`` so nothing finished is lost (not on errors: a diverged
    model must not overwrite the last good checkpoint)."""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, KeyboardInterrupt) and trainer.global_step > 0:
            trainer.save_checkpoint(self.path)


class AppendingCSVLogger(CSVLogger):
    """Lightning's CSV logger, except that a resumed run appends to its ``metrics.csv``
    (Lightning's deletes an existing file when it opens the log directory)."""

    @property
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        kept = path.read_text() if path.is_file() else ""
        writer = CSVLogger.experiment.fget(self)
        if kept and writer is not None:
            path.write_text(kept)
            writer.metrics_keys = sorted(kept.splitlines()[0].split(","))
        return writer


class FlushLogsWithCheckpoint(Callback):
    """Write the CSV log exactly when a checkpoint is written (after validation), so that a run
    killed and resumed has every finished epoch in its log, and nothing twice."""

    def on_validation_end(self, trainer, pl_module):
        if trainer.logger is not None and not trainer.sanity_checking:
            trainer.logger.save()


def _devices(value: str):
    return int(value) if str(value).isdigit() else value


#: Lightning's notes that say nothing a raekit user can act on
LIGHTNING_NOISE = (".*does not have many workers.*", ".*Experiment logs directory.*",
                   ".*Checkpoint directory .* exists and is not empty.*", ".*LeafSpec.*",
                   ".*isinstance.*treespec.*")
LIGHTNING_CHATTY_LOGGERS = ("lightning.pytorch.utilities.rank_zero",
                            "lightning.fabric.utilities.seed",
                            "lightning.pytorch.accelerators.cuda")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Inside: Lightning's informational logging and its notes in :data:`LIGHTNING_NOISE` are
    silenced; outside, the warning filters and logger levels are as they were."""
    with ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        for pattern in LIGHTNING_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        for name in LIGHTNING_CHATTY_LOGGERS:
            logger = logging.getLogger(name)
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.WARNING)
        yield


def make_trainer(cfg: TrainConfig, run_dir: Path, **overrides) -> L.Trainer:
    ckpt_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                           save_top_k=1, save_last=True, enable_version_counter=False)
    kwargs = dict(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=_devices(cfg.devices),
        strategy=cfg.strategy, precision=cfg.precision,
        logger=AppendingCSVLogger(run_dir, name="logs", version="", flush_logs_every_n_steps=10**9),
        callbacks=[FlushLogsWithCheckpoint(), best, InterruptCheckpoint(ckpt_dir / "last.ckpt"),
                   LearningRateMonitor(logging_interval="epoch")],
        plugins=[SafeCheckpointIO()], enable_progress_bar=cfg.progress,
        inference_mode=False,  # validation of a gradient penalty needs autograd
        log_every_n_steps=10, deterministic=False, default_root_dir=run_dir,
    )
    kwargs.update(overrides)
    try:
        return L.Trainer(**kwargs)
    except (ValueError, RuntimeError, TypeError) as e:
        # Lightning's messages for bad device settings
        raise RaekitError(f"cannot set up training ({e})".replace("\n", " ")) from None


def train(cfg: TrainConfig, *, resume: bool = False, trainer_overrides: dict | None = None) -> Path:
    """Train ``cfg``'s model; return the run directory. ``resume`` continues from
    ``RUN/checkpoints/last.ckpt``."""
    with quiet_lightning():
        return _train(cfg, resume=resume, trainer_overrides=trainer_overrides)


def _train(cfg: TrainConfig, *, resume: bool, trainer_overrides: dict | None) -> Path:
    run_dir = cfg.run_dir
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise RaekitError(f"nothing to resume: {last} does not exist")
    elif (run_dir / MODEL_FILE).exists() or last.exists():
        raise RaekitError(f"run directory {run_dir} already holds a run; use --resume to continue "
                          "it, or name=<new name> / out=<folder> for a new one")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    splits = load_splits(cfg)
    model = build_model(cfg, splits.shape)
    module = AutoencoderModule(model, lr=cfg.lr, plateau_factor=cfg.plateau_factor,
                               plateau_patience=cfg.plateau_patience, config=cfg.to_dict())
    trainer = make_trainer(cfg, run_dir, **(trainer_overrides or {}))
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_text(cfg.to_yaml(), run_dir / CONFIG_FILE)
    trainer.fit(module, train_dataloaders=loader(splits.train, cfg, shuffle=True),
                val_dataloaders=loader(splits.val, cfg), ckpt_path=str(last) if resume else None)
    if trainer.interrupted:
        raise RaekitError(f"training interrupted; continue with: raekit train --resume {run_dir}")
    if trainer.is_global_zero:
        finish_run(cfg, run_dir, splits, model)
    return run_dir


def finish_run(cfg: TrainConfig, run_dir: Path, splits: Splits, model: nn.Module) -> None:
    """Write ``model.pt`` (config + best weights) and the reconstruction grid."""
    best = run_dir / "checkpoints" / "best.ckpt"
    ckpt = load_torch(best)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    save_torch({"raekit": {"version": __version__, "format": FORMAT}, "config": cfg.to_dict(),
                "state_dict": model.state_dict(), "epoch": ckpt.get("epoch"),
                "val_loss": _best_score(ckpt)}, run_dir / MODEL_FILE)
    save_reconstructions(model, splits.val, run_dir / "reconstructions.png")
    fit_default_density(run_dir, model)


def fit_default_density(run_dir: Path, model: nn.Module) -> None:
    """Fit and store the density a model samples through by design, if it names one (the 2-stage
    VAE's second stage is trained here, so one command trains both stages)."""
    name = getattr(model, "default_density", None)
    if name:
        load_run(run_dir).fit_density(name, model)


def _best_score(ckpt: dict) -> float | None:
    for key, value in ckpt.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_score") is not None:
            return float(value["best_model_score"])
    return None


@torch.no_grad()
def save_reconstructions(model: nn.Module, dataset, path: Path, n: int = 16) -> None:
    """Held-out images (top row) over their reconstructions (bottom row)."""
    with evaluating(model):
        x = first_images(dataset, n).to(model_device(model))
        x_hat = model.reconstruct(x)
    save_grid([x, x_hat], path, labels=["held-out", "reconstruction"])


def evaluate_loss(model: nn.Module, dataset, batch_size: int = 100) -> dict[str, float]:
    """Mean of each loss term over ``dataset`` in eval mode (as the validation loop logs it)."""
    device = model_device(model)
    totals: dict[str, float] = {}
    n = 0
    with evaluating(model):
        for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
            x = images_of(batch).to(device)
            out = model(x)
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(x)
            n += len(x)
    return {k: v / n for k, v in totals.items()}

