"""Lightning callbacks of a raekit training run."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data import first_images, images_of
from .logs import RunCSVLogger

log = logging.getLogger("raekit")


class InterruptCheckpoint(Callback):
    """On Ctrl-C, save ``last.ckpt`` so nothing finished is lost (not on errors: a diverged
    model must not overwrite the last good checkpoint)."""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, KeyboardInterrupt) and trainer.global_step > 0:
            for logger in trainer.loggers:
                logger.save()
            trainer.save_checkpoint(self.path, weights_only=False)


class FlushLogsWithCheckpoint(Callback):
    """Write the CSV log after each validation, just before the epoch's checkpoint."""

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            for logger in trainer.loggers:
                logger.save()


class PreciseBatchNorm(Callback):
    """Batch-norm statistics that match the weights ("precise BN", Wu & Johnson 2021).

    Before each validation, every batch-norm layer's running mean and variance are recomputed
    as the plain average of the batch statistics of ``images`` training images (a fixed subset),
    the weights untouched. With Keras' momentum of 0.01 the running averages trail the weights
    by hundreds of steps, so the model that is validated, kept as the best and evaluated is not
    the one that was trained; with precise statistics it is. Only the batch-norm layers run in
    training mode (a spectral norm's power iteration does not move) and the random generators
    are restored afterwards, so training itself is unchanged.
    """

    def __init__(self, dataset, *, images: int = 4096, batch_size: int = 256, seed: int = 0):
        n = min(images, len(dataset))
        g = torch.Generator().manual_seed(seed)
        self.subset = Subset(dataset, torch.randperm(len(dataset), generator=g)[:n].tolist())
        self.batch_size = batch_size
        self.seconds = 0.0  # time spent, for the run's summary

    def on_validation_epoch_start(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        t = time.perf_counter()
        recompute_batch_norm(pl_module.model, DataLoader(self.subset, batch_size=self.batch_size))
        self.seconds += time.perf_counter() - t


def batch_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, loader) -> None:
    """Set every batch-norm layer's running statistics to the average of its batch statistics
    over ``loader``'s images, passed through ``model.reconstruct``."""
    layers = [m for m in batch_norm_layers(model) if m.track_running_stats]
    if not layers:
        return
    was_training = model.training
    momenta = [m.momentum for m in layers]
    counts = [m.num_batches_tracked.clone() for m in layers]
    device = next(model.parameters()).device
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average
            m.train()
        for batch in loader:
            model.reconstruct(images_of(batch).to(device))
    for m, momentum, count in zip(layers, momenta, counts):
        m.momentum = momentum
        m.num_batches_tracked.copy_(count)
    model.train(was_training)


class EpochLine(Callback):
    """One line per epoch through the ``raekit`` logger (instead of a progress bar that redraws
    itself, when the output is not a terminal): epoch, training and validation loss, lr, time."""

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        train_loss = getattr(pl_module, "train_loss_mean", lambda: None)()
        if train_loss is not None:
            parts.append(f"train_loss {train_loss:.5g}")
        for key in ("val_loss", "val_rec"):
            if key in m:
                parts.append(f"{key} {float(m[key]):.5g}")
        if "lr" in m:
            parts.append(f"lr {float(m['lr']):.3g}")
        parts.append(f"{time.perf_counter() - getattr(self, '_t', time.perf_counter()):.1f} s")
        log.info("  ".join(parts))


class LogImages(Callback):
    """After each validation, reconstructions of fixed held-out images and samples of the
    model's sampling density (fitted on the codes of up to ``codes`` training images) go to the
    trackers that take images (TensorBoard, W&B, MLflow)."""

    def __init__(self, held_out, train, *, images: int = 16, codes: int = 2000, seed: int = 0):
        self.x = first_images(held_out, images)
        g = torch.Generator().manual_seed(seed)
        self.train = Subset(train, torch.randperm(len(train), generator=g)[:codes].tolist())
        self.seed = seed

    def on_validation_end(self, trainer, pl_module):
        from ..densities import DENSITIES
        from ..models.base import sampling_density
        from ..pictures import grid_image, image_rows
        from ..sampling import encode_dataset, reconstruct, sample_images
        from .logs import log_image

        loggers = [lg for lg in trainer.loggers if not isinstance(lg, RunCSVLogger)]
        if trainer.sanity_checking or not trainer.is_global_zero or not loggers:
            return
        model = pl_module.model
        with torch.random.fork_rng():
            pictures = {"reconstructions": grid_image([self.x, reconstruct(model, self.x)],
                                                      ["held-out", "reconstruction"])}
            name = sampling_density(model)
            if name == "two-stage":  # a second VAE is too much to train every epoch
                name = "gmm"
            density = DENSITIES[name]().fit(encode_dataset(model, self.train, progress=False))
            samples = sample_images(model, density, 32, seed=self.seed)
            pictures[f"samples_{name}"] = grid_image(image_rows(samples, 8))
        for tag, picture in pictures.items():
            for logger in loggers:
                log_image(logger, tag, np.asarray(picture), trainer.global_step)
