"""raekit — regularized autoencoders as generative models (Ghosh et al., ICLR 2020)."""

__version__ = "0.1.0"

from .config import TrainConfig, build_config  # noqa: E402
from .errors import RaekitError  # noqa: E402
from .models import Autoencoder  # noqa: E402
from .nets import build_networks  # noqa: E402
from .regularizers import GradientPenalty, L2Penalty, Regularizer, SpectralNorm  # noqa: E402
from .density import (  # noqa: E402
    DENSITIES, Density, DirichletProcessMixtureDensity, GaussianDensity, GaussianMixtureDensity,
    KernelDensityEstimate, StandardNormalPrior, TwoStageVAEDensity, load_density, make_density,
    save_density,
)
from .generate import EncoderDecoder, decode, encode_dataset, reconstruct, sample_images  # noqa: E402
from .memory import keep_freed_memory  # noqa: E402
from .interpolate import linear, norm_rescaled, slerp  # noqa: E402
from .runs import load_run  # noqa: E402
from .vae import VAE  # noqa: E402
from .wae import WAE  # noqa: E402

__all__ = [
    "Autoencoder", "GradientPenalty", "L2Penalty", "RaekitError", "Regularizer", "SpectralNorm",
    "TrainConfig", "build_config", "build_networks", "VAE", "WAE",
    "DENSITIES", "Density", "DirichletProcessMixtureDensity", "GaussianDensity",
    "GaussianMixtureDensity", "KernelDensityEstimate", "StandardNormalPrior", "TwoStageVAEDensity",
    "load_density", "make_density", "save_density",
    "EncoderDecoder", "decode", "encode_dataset", "reconstruct", "sample_images",
    "linear", "norm_rescaled", "slerp", "load_run", "keep_freed_memory",
]
