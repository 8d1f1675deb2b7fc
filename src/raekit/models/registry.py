"""Every image model raekit trains, by name: a dict next to the builders (no if/elif on names).

A builder takes the run's :class:`~raekit.training.TrainConfig` and the data's image shape
(C, H, W) and returns a plain ``nn.Module`` with ``forward(x) → {"loss", …}``, ``encode`` and
``decode``. Each entry also names the loss weights its model reads, so that a config setting a
weight the model ignores is refused. The paper's hyperparameters live in the shipped presets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from ..errors import RaekitError
from .autoencoder import Autoencoder, mean_squared_error
from .nets import NETWORKS, build_networks, build_user_networks, is_user_network, network_for_size
from .regularizers import GradientPenalty, L2Penalty, Regularizer, SpectralNorm
from .vae import VAE, summed_squared_error
from .wae import WAE, wae_paper_reconstruction_error

if TYPE_CHECKING:
    from ..training.config import TrainConfig

Shape = tuple[int, int, int]  # (C, H, W)

#: latent size by image size, used when a config leaves it unset (paper: MNIST 16, CelebA 64)
DEFAULT_LATENT = {8: 8, 32: 16, 64: 64}


def latent_dim(cfg: TrainConfig, shape: Shape) -> int:
    return cfg.latent_dim or DEFAULT_LATENT.get(shape[-1], 16)


def networks(cfg: TrainConfig, shape: Shape, *, encoder_out_factor: int = 1):
    """The run's encoder and decoder for images of ``shape``; the encoder's output has
    ``encoder_out_factor × d`` units (2 for a Gaussian encoder's mean and log σ)."""
    c, h, w = shape
    name = cfg.network or network_for_size(h)
    d = latent_dim(cfg, shape)
    if is_user_network(name):
        for key in ("filters", "center_input"):
            if getattr(cfg, key) is not None:
                raise RaekitError(f"{key} shapes raekit's own networks; network={name} is yours "
                                  "(leave it unset)")
        if h != w:
            raise RaekitError(f"the images are {h}×{w}; raekit's data are square")
        return build_user_networks(name, channels=c, image_size=h, latent_dim=d,
                                   encoder_out=encoder_out_factor * d)
    if name in NETWORKS and (NETWORKS[name].image_size, NETWORKS[name].image_size) != (h, w):
        size = NETWORKS[name].image_size
        raise RaekitError(f"network {name!r} takes {size}×{size} images but the data's are {h}×{w}")
    return build_networks(name, channels=c, latent_dim=d, width=cfg.width,
                          encoder_out=encoder_out_factor * d, filters=cfg.filters,
                          center=cfg.center_input)


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


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[TrainConfig, Shape], nn.Module]
    weights: tuple[str, ...]  # the config's loss weights this model reads
    summary: str


def _autoencoder(make_regularizer: Callable[[TrainConfig], Regularizer]):
    def build(cfg: TrainConfig, shape: Shape) -> nn.Module:
        encoder, decoder = networks(cfg, shape)
        return Autoencoder(encoder, decoder, beta=cfg.beta, regularizer=make_regularizer(cfg),
                           latent_penalty=cfg.latent_penalty,
                           reconstruction_loss=reconstruction_loss(cfg))
    return build


def _vae(*, constant_sigma: bool = False, default_density: str | None = None):
    def build(cfg: TrainConfig, shape: Shape) -> nn.Module:
        encoder, decoder = networks(cfg, shape, encoder_out_factor=1 if constant_sigma else 2)
        return VAE(encoder, decoder, kl_weight=cfg.kl_weight,
                   sigma=cfg.sigma if constant_sigma else None, default_density=default_density,
                   reconstruction_loss=reconstruction_loss(cfg))
    return build


def _wae(cfg: TrainConfig, shape: Shape) -> nn.Module:
    return WAE(*networks(cfg, shape), mmd_weight=cfg.mmd_weight,
               reconstruction_loss=reconstruction_loss(cfg))


MODELS: dict[str, ModelEntry] = {
    "ae": ModelEntry(_autoencoder(lambda cfg: Regularizer()), (), "plain autoencoder"),
    "rae": ModelEntry(_autoencoder(lambda cfg: Regularizer()), ("beta",), "REC + β·L_Z"),
    "rae-l2": ModelEntry(_autoencoder(lambda cfg: L2Penalty(cfg.reg_weight)),
                         ("beta", "reg_weight"), "+ λ·ΣW² over the decoder's kernels"),
    "rae-gp": ModelEntry(_autoencoder(lambda cfg: GradientPenalty(cfg.reg_weight,
                                                                  every=cfg.gp_every)),
                         ("beta", "reg_weight"), "+ λ·gradient penalty of the decoder"),
    "rae-sn": ModelEntry(_autoencoder(lambda cfg: SpectralNorm(cfg.sn_scope,
                                                                 cfg.sn_convention)), ("beta",),
                         "+ spectral normalisation"),
    "vae": ModelEntry(_vae(), ("kl_weight",), "VAE, log σ = 5·tanh"),
    "cv-vae": ModelEntry(_vae(constant_sigma=True), ("kl_weight",), "VAE with a constant σ"),
    "wae": ModelEntry(_wae, ("mmd_weight",), "WAE-MMD, IMQ kernel"),
    "2s-vae": ModelEntry(_vae(default_density="two-stage"), ("kl_weight",),
                         "2-stage VAE (second stage fitted after training)"),
}


def build_model(cfg: TrainConfig, shape: Shape) -> nn.Module:
    if cfg.model not in MODELS:
        raise RaekitError(f"unknown model {cfg.model!r}; choose one of {sorted(MODELS)}")
    return MODELS[cfg.model].build(cfg, tuple(shape))
