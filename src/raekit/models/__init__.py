"""Models: plain ``nn.Module``s built from any encoder and decoder.

``base`` (the shared verbs), ``autoencoder`` (AE and the RAE family), ``regularizers`` (what
makes an RAE regularised), ``vae`` and ``wae`` (the baselines), ``nets`` (the paper's networks)
and ``registry`` (every trainable model by name).
"""

from .autoencoder import Autoencoder
from .base import BaseAutoencoder, evaluating, model_device, resolve_device
from .nets import NETWORKS, build_networks
from .registry import MODELS, build_model
from .regularizers import GradientPenalty, L2Penalty, Regularizer, SpectralNorm
from .vae import VAE
from .wae import WAE

__all__ = ["Autoencoder", "BaseAutoencoder", "GradientPenalty", "L2Penalty", "MODELS", "NETWORKS",
           "Regularizer", "SpectralNorm", "VAE", "WAE", "build_model", "build_networks",
           "evaluating", "model_device", "resolve_device"]
