"""Training on Lightning (Ghosh et al. 2020, appendix; reference code
``train_raes_vaes.py``): Adam, Keras' ReduceLROnPlateau(0.5, patience 5) on the validation
loss, the best-validation checkpoint, a CSV log, a progress bar, and whatever
devices/strategy/precision Lightning supports (DDP included, also on the CPU).

The Lightning module wraps *any* model whose ``forward(x)`` returns ``{"loss": …, terms…}``:
it never asks which model or regularizer it trains.

A run directory holds everything::

    RUN/config.yaml          the resolved config
    RUN/checkpoints/last.ckpt  written at the end of every epoch (and on Ctrl-C): --resume uses it
    RUN/checkpoints/best.ckpt  the best validation loss so far
    RUN/model.pt             config + image shape + best weights (loads with weights_only=True)
    RUN/examples.pt          a few held-out images (interpolation strips without the data)
    RUN/logs/metrics.csv     per-step training and per-epoch validation metrics
    RUN/reconstructions.png  held-out images over their reconstructions

Every file is written atomically and durably (:mod:`raekit.files`): a run killed at any moment
leaves each file whole, and ``--resume`` continues after the last finished epoch.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from .. import __version__
from ..data import EpochOrder, Splits, images_of, load_splits, loader
from ..errors import DivergenceError, Interrupted, RaekitError
from ..files import load_torch, remove_stale_temporaries, save_json, save_text, save_torch
from ..models.base import evaluating, model_device, sampling_density
from ..models.nets import NETWORKS
from ..models.registry import build_model
from ..optim import PLATEAU_MODES, plateau_scheduler  # noqa: F401  (re-exported)
from ..pictures import image_rows, read_metrics, save_grid, save_training_curves
from ..sampling import interpolation_strips, reconstruct, sample_images
from .callbacks import (
    EpochLine,
    FlushLogsWithCheckpoint,
    InterruptCheckpoint,
    LogImages,
    PreciseBatchNorm,
)
from .config import TrainConfig
from .logs import RunCSVLogger, make_loggers
from .precision import resolve_precision
from .run import (
    CONFIG_FILE,
    EXAMPLES_FILE,
    FORMAT,
    MODEL_FILE,
    SUMMARY_FILE,
    load_run,
    write_examples,
    write_model_file,
)


def rng_state() -> dict[str, Any]:
    """Every random generator training draws from, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class AutoencoderModule(L.LightningModule):
    """Lightning wrapper of a model whose ``forward(x)`` returns a dict with ``"loss"``.

    Adam, and the learning-rate plateau of :func:`plateau_scheduler` stepped here, on the exact
    mean validation loss of the epoch, before the epoch's checkpoint is written: ``last.ckpt``
    then holds the scheduler, optimizer and random generators exactly as the next epoch starts.
    Adam is PyTorch's fused implementation where the parameters' device has one (on the CPU
    the default is a loop over the parameters).

    ``channels_last``: on the CPU, hold the model's 4-d weights channels-last, so that its
    convolutions and everything between them run channels-last (the layout oneDNN computes
    in; a full-width MNIST step runs 10–13 % faster in bfloat16, 1–5 % in float32, on a 2-core
    Xeon). The inputs stay as they come. Off by default: a network that ``view``s its
    activations needs contiguous ones; the paper's networks (:mod:`raekit.models.nets`) do not,
    and :func:`train` turns it on for them (not for a ``network=`` function of one's own).
    """

    def __init__(self, model: nn.Module, *, lr: float, plateau_factor: float = 0.5,
                 plateau_patience: int = 5, plateau_min_delta: float = 1e-4,
                 plateau_min_lr: float = 0.0, plateau_mode: str = "keras",
                 config: dict[str, Any] | None = None, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.lr = lr
        self.channels_last = channels_last
        self.plateau_settings = dict(factor=plateau_factor, patience=plateau_patience,
                                     min_delta=plateau_min_delta, min_lr=plateau_min_lr,
                                     mode=plateau_mode)
        self.config = config or {}
        self.plateau = None
        self.order: EpochOrder | None = None  # the training data's order, saved with checkpoints
        self._train_sum, self._train_count = 0.0, 0  # the epoch's training loss, for its line
        self._restored: dict[str, Any] = {}

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
        # each term per step (every log_every_n_steps) and its mean over the epoch
        self.log("train_loss", loss.detach(), prog_bar=True, on_epoch=True, batch_size=len(x))
        self.log_dict({f"train_{k}": v.detach() for k, v in out.items() if k != "loss"},
                      on_epoch=True, batch_size=len(x))
        self._train_sum += float(loss.detach()) * len(x)
        self._train_count += len(x)
        return loss

    def on_train_epoch_start(self):
        self._train_sum, self._train_count = 0.0, 0

    def train_loss_mean(self) -> float | None:
        """The mean training loss of the epoch so far (on this process)."""
        count = getattr(self, "_train_count", 0)
        return self._train_sum / count if count else None

    def on_validation_epoch_start(self):
        self._val_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_count = torch.zeros((), dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx):
        x = images_of(batch)
        out = self.model(x)
        self._val_sum += out["loss"].detach().double() * len(x)
        self._val_count += len(x)
        self.log("val_loss", out["loss"].detach(), prog_bar=True, on_epoch=True, sync_dist=True,
                 batch_size=len(x))
        self.log_dict({f"val_{k}": v.detach() for k, v in out.items() if k != "loss"},
                      on_epoch=True, sync_dist=True, batch_size=len(x))

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking or self.plateau is None:
            return
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._val_count, reduce_op="sum")
        optimizer = self.plateau.optimizer
        self.log("lr", optimizer.param_groups[0]["lr"], on_epoch=True)  # the epoch's rate
        self.plateau.step(float(total / count.clamp_min(1)))

    def configure_model(self):
        if self.channels_last and self.trainer.strategy.root_device.type == "cpu":
            self.model.to(memory_format=torch.channels_last)  # the same parameter objects

    def configure_optimizers(self):
        params = list(self.model.parameters())
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        opt = torch.optim.Adam(params, lr=self.lr, fused=fused or None)
        self.plateau = plateau_scheduler(opt, **self.plateau_settings)
        if "plateau" in self._restored:
            self.plateau.load_state_dict(self._restored.pop("plateau"))
        return opt

    def on_train_start(self):
        if "rng" in self._restored:  # resumed: the generators as the next epoch began
            set_rng_state(self._restored.pop("rng"))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["raekit"] = {"version": __version__, "format": FORMAT, "config": self.config,
                                "rng": rng_state()}
        if self.order is not None:
            done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
            mid_epoch = done < self.trainer.num_training_batches
            checkpoint["raekit"]["order"] = {**self.order.state_dict(done), "mid_epoch": mid_epoch}
        if self.plateau is not None:
            checkpoint["raekit"]["plateau"] = self.plateau.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("raekit", {})
        self._restored = {k: saved[k] for k in ("plateau", "rng") if k in saved}
        if "order" in saved and self.order is not None:
            self.order.load_state_dict(saved["order"], mid_epoch=saved["order"]["mid_epoch"])


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, written atomically and durably (:func:`raekit.files.save_torch`)
    and loaded without unpickling code, with a one-line error for a corrupt or foreign file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        save_torch(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_torch(path, map_location=map_location or "cpu")


def _devices(value: str):
    return int(value) if str(value).isdigit() else value


#: Lightning's notes that say nothing a raekit user can act on
LIGHTNING_NOISE = (".*does not have many workers.*", ".*Experiment logs directory.*",
                   ".*Checkpoint directory .* exists and is not empty.*", ".*LeafSpec.*",
                   ".*isinstance.*treespec.*",
                   # raekit replays the rest of an interrupted epoch itself (EpochOrder)
                   ".*resuming from a checkpoint that ended before the epoch ended.*")
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


def make_trainer(cfg, run_dir: Path, *, logger=None, callbacks: list | None = None,
                 **overrides) -> L.Trainer:
    """A Lightning trainer writing ``run_dir``'s checkpoints and log (``cfg``: the run's config,
    image or grammar: epochs, devices, strategy, precision, progress)."""
    ckpt_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                           save_top_k=1, enable_version_counter=False)
    # every epoch's end, after `best` (checkpoint callbacks keep their order, after the others),
    # so that it records best's state as of this epoch
    last = ModelCheckpoint(dirpath=ckpt_dir, filename=LAST.removesuffix(".ckpt"), monitor=None,
                           save_top_k=1, enable_version_counter=False)
    kwargs = dict(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=_devices(cfg.devices),
        strategy=cfg.strategy, precision=resolve_precision(cfg.precision, cfg.accelerator),
        logger=logger if logger is not None else RunCSVLogger(run_dir),
        callbacks=[FlushLogsWithCheckpoint(), InterruptCheckpoint(ckpt_dir / LAST),
                   *(callbacks or []), *([] if cfg.progress else [EpochLine()]), best, last],
        plugins=[SafeCheckpointIO()], enable_progress_bar=cfg.progress,
        enable_model_summary=False, num_nodes=getattr(cfg, "num_nodes", 1),
        inference_mode=False,  # validation of a gradient penalty needs autograd
        num_sanity_val_steps=0,  # it would draw random numbers a resumed run does not draw
        log_every_n_steps=10, deterministic=False, default_root_dir=run_dir,
    )
    kwargs.update(overrides)
    try:
        return L.Trainer(**kwargs)
    except (ValueError, RuntimeError, TypeError) as e:
        # Lightning's messages for bad device settings
        raise RaekitError(f"cannot set up training ({e})".replace("\n", " ")) from None


LAST = "last.ckpt"


def train(cfg: TrainConfig, *, resume: bool = False, callbacks: list | None = None,
          trainer_overrides: dict | None = None) -> Path:
    """Train ``cfg``'s model; return the run directory.

    ``resume`` continues from ``RUN/checkpoints/last.ckpt``: after the last finished epoch, with
    the optimizer, learning-rate schedule, random generators and log as they were then.
    ``callbacks`` are extra Lightning callbacks.
    """
    with quiet_lightning():
        return _train(cfg, resume=resume, callbacks=callbacks,
                      trainer_overrides=trainer_overrides)


def _train(cfg: TrainConfig, *, resume: bool, callbacks: list | None,
           trainer_overrides: dict | None) -> Path:
    run_dir = cfg.run_dir
    last = run_dir / "checkpoints" / LAST
    keep_through_step = None
    if resume:
        if not last.is_file():
            raise RaekitError(f"nothing to resume: {last} does not exist")
        remove_stale_temporaries(run_dir)  # half-written files of a killed process
        keep_through_step = int(load_torch(last)["global_step"])
    elif (run_dir / MODEL_FILE).exists() or last.exists():
        raise RaekitError(f"run directory {run_dir} already holds a run; use --resume to continue "
                          "it, or name=<new name> / out=<folder> for a new one")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    splits = load_splits(cfg)
    model = build_model(cfg, splits.shape)
    module = AutoencoderModule(model, lr=cfg.lr, plateau_factor=cfg.plateau_factor,
                               plateau_patience=cfg.plateau_patience,
                               plateau_min_delta=cfg.plateau_min_delta,
                               plateau_mode=cfg.plateau_mode, config=cfg.to_dict(),
                               channels_last=cfg.network is None or cfg.network in NETWORKS)
    loggers = make_loggers(cfg.logger, run_dir, run_name=run_dir.name,
                           keep_through_step=keep_through_step)
    extra = [PreciseBatchNorm(splits.train, images=cfg.precise_bn_images, seed=cfg.seed)
             ] if cfg.precise_bn else []
    if len(loggers) > 1:
        extra.append(LogImages(splits.val, splits.train, seed=cfg.seed))
    trainer = make_trainer(cfg, run_dir, logger=loggers, callbacks=[*extra, *(callbacks or [])],
                           **(trainer_overrides or {}))
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_text(cfg.to_yaml(), run_dir / CONFIG_FILE)
    module.order = EpochOrder(len(splits.train), cfg.seed, batch_size=cfg.batch_size,
                              world_size=trainer.world_size)
    t = time.perf_counter()
    try:
        trainer.fit(module, train_dataloaders=loader(splits.train, cfg, order=module.order),
                    val_dataloaders=loader(splits.val, cfg),
                    ckpt_path=str(last) if resume else None)
    except SystemExit:  # Lightning exits the process on Ctrl-C, after saving (InterruptCheckpoint)
        if not trainer.interrupted:
            raise
    if trainer.interrupted:
        raise Interrupted(f"training stopped at epoch {trainer.current_epoch}, step "
                          f"{trainer.global_step} and saved; continue with: "
                          f"raekit train --resume {run_dir}")
    if trainer.is_global_zero:
        precise = next((c for c in trainer.callbacks if isinstance(c, PreciseBatchNorm)), None)
        finish_run(cfg, run_dir, splits, model, seconds=time.perf_counter() - t,
                   precise_bn_seconds=precise.seconds if precise else None)
    return run_dir


def finish_run(cfg: TrainConfig, run_dir: Path, splits: Splits, model: nn.Module, *,
               seconds: float | None = None, precise_bn_seconds: float | None = None) -> dict:
    """Write ``model.pt`` (config, image shape, best weights) and ``examples.pt``; fit the
    model's sampling density; draw the pictures of the method (reconstructions, samples, an
    interpolation, the training curves); write and return ``summary.json``."""
    ckpt = load_torch(run_dir / "checkpoints" / "best.ckpt")
    model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    write_model_file(run_dir / MODEL_FILE, cfg, model, splits.shape, epoch=ckpt.get("epoch"),
                     val_loss=_best_score(ckpt))
    write_examples(run_dir / EXAMPLES_FILE, splits.val)
    run = load_run(run_dir)
    x = run.examples()  # (n, C, H, W) held-out images
    save_reconstructions(model, x[:16], run_dir / RECONSTRUCTIONS)

    name = sampling_density(model)
    density, fit = run.fit_density(name, model)
    samples = sample_images(model, density, 64, seed=0)
    rows = image_rows(samples, 8)
    save_grid(rows, run_dir / samples_file(name),
              labels=[f"{name} samples"] + [""] * (len(rows) - 1))

    pairs = min(4, len(x) // 2)
    strips, labels = interpolation_strips(model, x[:pairs], x[pairs:2 * pairs], 10,
                                          methods=["linear"])
    save_grid(strips, run_dir / INTERPOLATIONS_FILE, labels=labels)
    metrics = run_dir / "logs" / "metrics.csv"
    save_training_curves(metrics, run_dir / CURVES,
                         title=f"{cfg.model} on {cfg.dataset}: training curves")

    summary = training_summary(read_metrics(metrics), ckpt.get("epoch"))
    summary.update(
        run=str(run_dir), model=cfg.model, dataset=cfg.dataset,
        train_seconds=None if seconds is None else round(seconds, 1),
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        batch_norm=({"precise": True, "images": min(cfg.precise_bn_images, len(splits.train)),
                     "seconds": round(precise_bn_seconds or 0.0, 2)} if cfg.precise_bn
                    else {"precise": False, "statistics": "running averages (momentum 0.01)"}),
        density={"name": name, "codes": fit.n_codes, "seconds": round(fit.seconds, 2),
                 "val_loglik": fit.val_loglik},
        files=[MODEL_FILE, EXAMPLES_FILE, RECONSTRUCTIONS, samples_file(name),
               INTERPOLATIONS_FILE, CURVES, "logs/metrics.csv", f"densities/{name}.pt"],
    )
    save_json(summary, run_dir / SUMMARY_FILE)
    return summary


RECONSTRUCTIONS = "reconstructions.png"
INTERPOLATIONS_FILE = "interpolations.png"
CURVES = "curves.png"


def samples_file(density: str, seed: int = 0) -> str:
    """The picture of a run's samples (the name ``raekit sample`` gives it too)."""
    return f"samples-{density}-seed{seed}.png"


def training_summary(rows: list[dict[str, float]], best_epoch: int | None) -> dict:
    """The best epoch's held-out loss terms and the last epoch's training terms, from the rows
    of ``metrics.csv``; with the ratio of held-out to training reconstruction error."""
    val = [r for r in rows if "val_loss" in r]
    train = [r for r in rows if "train_loss_epoch" in r]
    best = next((r for r in val if int(r["epoch"]) == best_epoch), val[-1] if val else {})
    last_val, last_train = (val[-1] if val else {}), (train[-1] if train else {})
    out = {"epochs": len(val), "best_epoch": None if not best else int(best["epoch"]) + 1,
           "val_at_best": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
           "val_last": {k[4:]: v for k, v in last_val.items() if k.startswith("val_")},
           "train_last": {k[6:-6]: v for k, v in last_train.items()
                          if k.startswith("train_") and k.endswith("_epoch")}}
    if "rec" in out["val_last"] and out["train_last"].get("rec"):
        out["rec_held_out_over_train"] = out["val_last"]["rec"] / out["train_last"]["rec"]
    return out


def _best_score(ckpt: dict) -> float | None:
    for key, value in ckpt.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_score") is not None:
            return float(value["best_model_score"])
    return None


def save_reconstructions(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    """Held-out images ``x`` (top row) over their reconstructions (bottom row)."""
    x_hat = reconstruct(model, x)
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

