"""The learning-rate schedules of the reference codes: Keras' ``ReduceLROnPlateau`` on the
validation loss, as the RAE code (``train_raes_vaes.py``, the 2-stage VAE's second stage in
``my_utility/estimate_density_and_sample.py``) and the Grammar VAE code (Keras 1.2.1) use it;
shared by the image trainer, the second stage and the grammar trainer."""

from __future__ import annotations

import torch

from .errors import RaekitError


def plateau_scheduler(optimizer: torch.optim.Optimizer, *, factor: float, patience: int,
                      min_delta: float = 1e-4, min_lr: float = 0.0, mode: str = "keras"):
    """The learning rate multiplied by ``factor`` when the validation loss stops improving.

    ``mode="keras"`` (the reference code's ``keras.callbacks.ReduceLROnPlateau``): an epoch
    improves when the loss falls by more than ``min_delta`` (an absolute amount), and the rate
    drops after ``patience`` epochs without improvement. ``mode="keras1"``: Keras 1.x's callback
    (Keras 1.2.1, the Grammar VAE's), :class:`Keras1Plateau`. ``mode="torch"``: PyTorch's
    defaults — a relative threshold of ``min_delta`` and a drop after ``patience + 1`` such epochs.
    """
    if mode not in PLATEAU_MODES:
        raise RaekitError(f"plateau_mode must be one of {', '.join(PLATEAU_MODES)}, got {mode!r}")
    if mode == "keras1":
        return Keras1Plateau(optimizer, mode="min", factor=factor, patience=patience,
                             threshold=min_delta, threshold_mode="abs", min_lr=min_lr, eps=0.0)
    keras = mode == "keras"
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=factor, patience=patience - 1 if keras else patience,
        threshold=min_delta, threshold_mode="abs" if keras else "rel", min_lr=min_lr,
        eps=0.0 if keras else 1e-8)  # Keras keeps halving while the rate is above min_lr


class Keras1Plateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """Keras 1.x's ``ReduceLROnPlateau`` (``keras/callbacks.py`` of Keras 1.2.1): the count of
    epochs without an improvement of more than ``threshold`` is tested *before* it is
    incremented, so the first drop comes after ``patience + 1`` such epochs and, the count then
    restarting at 1, each further one after ``patience``; a rate within ``min_lr·1e-4`` of
    ``min_lr`` is not lowered (nor is the count reset). Its state is PyTorch's."""

    def step(self, metrics, epoch=None):  # noqa: ARG002 — PyTorch's signature
        current = float(metrics)
        self.last_epoch += 1
        if current < self.best - self.threshold:
            self.best = current
            self.num_bad_epochs = 0
        else:
            if self.num_bad_epochs >= self.patience:
                lowered = False
                for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                    if float(group["lr"]) > min_lr + min_lr * 1e-4:
                        group["lr"] = max(float(group["lr"]) * self.factor, min_lr)
                        lowered = True
                if lowered:
                    self.num_bad_epochs = 0
            self.num_bad_epochs += 1
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]


PLATEAU_MODES = ("keras", "keras1", "torch")
