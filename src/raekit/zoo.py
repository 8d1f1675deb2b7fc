"""Every model raekit trains, by name: a dict next to the builders (no if/elif on names).

A builder takes the run's :class:`~raekit.config.TrainConfig` and the data's image shape
(C, H, W) and returns a plain ``nn.Module`` with ``forward(x) → {"loss", …}``, ``encode`` and
``decode``. The paper's hyperparameters live in the shipped presets, not here.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .config import TrainConfig
from .data import DEFAULT_LATENT
from .errors import RaekitError
from .models import Autoencoder, mean_squared_error
from .nets import NETWORKS, build_networks, network_for_size
from .regularizers import GradientPenalty, L2Penalty, Regularizer, SpectralNorm
from .vae import VAE, summed_squared_error
from .wae import WAE, wae_paper_reconstruction_error


def latent_dim(cfg: TrainConfig, shape: tuple[int, int, int]) -> int:
    return cfg.latent_dim or DEFAULT_LATENT.get(shape[-1], 16)


def networks(cfg: TrainConfig, shape: tuple[int, int, int], *, encoder_out_factor: int = 1):
    """The run's encoder and decoder for images of ``shape``; the encoder's output has
    ``encoder_out_factor × d`` units (2 for a Gaussian encoder's mean and log σ)."""
    c, h, w = shape
    name = cfg.network or network_for_size(h)
    if name in NETWORKS and (NETWORKS[name].image_size, NETWORKS[name].image_size) != (h, w):
        size = NETWORKS[name].image_size
        raise RaekitError(f"network {name!r} takes {size}×{size} images but the data's are {h}×{w}")
    d = latent_dim(cfg, shape)
    return build_networks(name, channels=c, latent_dim=d, width=cfg.width,
                          encoder_out=encoder_out_factor * d)


#: ``reconstruction=`` choices; unset, each model keeps its reference-code default (mean squared
#: error for the RAE family and WAE, summed over pixels for the VAEs)
RECONSTRUCTION_LOSSES = {
    "mean": mean_squared_error,
    "sum": summed_squared_error,
    "wae-celeba": wae_paper_reconstruction_error,  # 0.05·Σ‖x − x̂‖², the reference CelebA WAE's
}


def reconstruction_loss(cfg: TrainConfig):
    if cfg.reconstruction is None:
        return None
    if cfg.reconstruction not in RECONSTRUCTION_LOSSES:
        raise RaekitError(f"unknown reconstruction {cfg.reconstruction!r}; choose one of "
                          f"{sorted(RECONSTRUCTION_LOSSES)}")
    return RECONSTRUCTION_LOSSES[cfg.reconstruction]


def _autoencoder(make_regularizer: Callable[[TrainConfig], Regularizer]):
    def build(cfg: TrainConfig, shape: tuple[int, int, int]) -> nn.Module:
        encoder, decoder = networks(cfg, shape)
        return Autoencoder(encoder, decoder, beta=cfg.beta, regularizer=make_regularizer(cfg),
                           latent_penalty=cfg.latent_penalty, reconstruction_loss=reconstruction_loss(cfg))
    return build


MODELS: dict[str, Callable[[TrainConfig, tuple[int, int, int]], nn.Module]] = {
    "ae": _autoencoder(lambda cfg: Regularizer()),
    "rae": _autoencoder(lambda cfg: Regularizer()),
    "rae-l2": _autoencoder(lambda cfg: L2Penalty(cfg.reg_weight)),
    "rae-gp": _autoencoder(lambda cfg: GradientPenalty(cfg.reg_weight, every=cfg.gp_every)),
    "rae-sn": _autoencoder(lambda cfg: SpectralNorm(cfg.sn_scope)),
    # Baselines; beta is the weight of their code term (KL or MMD).
    "vae": lambda cfg, shape: VAE(*networks(cfg, shape, encoder_out_factor=2), kl_weight=cfg.beta,
                                  reconstruction_loss=reconstruction_loss(cfg)),
    "cv-vae": lambda cfg, shape: VAE(*networks(cfg, shape), kl_weight=cfg.beta, sigma=cfg.sigma,
                                     reconstruction_loss=reconstruction_loss(cfg)),
    "wae": lambda cfg, shape: WAE(*networks(cfg, shape), mmd_weight=cfg.beta,
                                  reconstruction_loss=reconstruction_loss(cfg)),
    "2s-vae": lambda cfg, shape: VAE(*networks(cfg, shape, encoder_out_factor=2),
                                     kl_weight=cfg.beta, default_density="two-stage",
                                     reconstruction_loss=reconstruction_loss(cfg)),
}


def build_model(cfg: TrainConfig, shape: tuple[int, int, int]) -> nn.Module:
    if cfg.model not in MODELS:
        raise RaekitError(f"unknown model {cfg.model!r}; choose one of {sorted(MODELS)}")
    return MODELS[cfg.model](cfg, tuple(shape))
