"""The learning-rate schedule of the reference code (``train_raes_vaes.py`` and the 2-stage VAE's
second stage in ``my_utility/estimate_density_and_sample.py``): Keras' ``ReduceLROnPlateau`` on
the validation loss, shared by the image trainer and the second stage."""

from __future__ import annotations

import torch

from .errors import RaekitError


def plateau_scheduler(optimizer: torch.optim.Optimizer, *, factor: float, patience: int,
                      min_delta: float = 1e-4, min_lr: float = 0.0, mode: str = "keras"):
    """The learning rate multiplied by ``factor`` when the validation loss stops improving.

    ``mode="keras"`` (the reference code's ``keras.callbacks.ReduceLROnPlateau``): an epoch
    improves when the loss falls by more than ``min_delta`` (an absolute amount), and the rate
    drops after ``patience`` epochs without improvement. ``mode="torch"``: PyTorch's defaults —
    a relative threshold of ``min_delta`` and a drop after ``patience + 1`` such epochs.
    """
    if mode not in PLATEAU_MODES:
        raise RaekitError(f"plateau_mode must be one of {', '.join(PLATEAU_MODES)}, got {mode!r}")
    keras = mode == "keras"
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=factor, patience=patience - 1 if keras else patience,
        threshold=min_delta, threshold_mode="abs" if keras else "rel", min_lr=min_lr,
        eps=0.0 if keras else 1e-8)  # Keras keeps halving while the rate is above min_lr


PLATEAU_MODES = ("keras", "torch")
