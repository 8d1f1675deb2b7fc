"""raekit — regularized autoencoders as generative models (Ghosh et al., ICLR 2020)."""

__version__ = "0.1.0"

from .config import TrainConfig, build_config  # noqa: E402
from .errors import RaekitError  # noqa: E402
from .models import Autoencoder  # noqa: E402
from .nets import build_networks  # noqa: E402
from .regularizers import GradientPenalty, L2Penalty, Regularizer, SpectralNorm  # noqa: E402

__all__ = [
    "Autoencoder", "GradientPenalty", "L2Penalty", "RaekitError", "Regularizer", "SpectralNorm",
    "TrainConfig", "build_config", "build_networks",
]
