"""raekit — regularized autoencoders as generative models (Ghosh et al., ICLR 2020).

The library: ``models`` (autoencoders, regularizers, baselines, networks), ``training`` (config,
Lightning loop, run directories), ``densities`` (ex-post densities), ``sampling`` (generation
and interpolation), ``evaluation`` (FID, domain FD, PRD, Table 1), ``grammar`` (structured
objects) and ``data``. The ``raekit`` command lives in ``cli`` and only calls the library.
"""

__version__ = "0.2.0"

from .densities import (  # noqa: E402
    DENSITIES,
    Density,
    DirichletProcessMixtureDensity,
    GaussianDensity,
    GaussianMixtureDensity,
    KernelDensityEstimate,
    StandardNormalPrior,
    TwoStageVAEDensity,
    load_density,
    make_density,
    save_density,
)
from .errors import RaekitError  # noqa: E402
from .memory import keep_freed_memory  # noqa: E402
from .models import (  # noqa: E402
    VAE,
    WAE,
    Autoencoder,
    BaseAutoencoder,
    GradientPenalty,
    L2Penalty,
    Regularizer,
    SpectralNorm,
    build_networks,
)
from .sampling import (  # noqa: E402
    decode,
    encode_dataset,
    linear,
    norm_rescaled,
    reconstruct,
    sample_images,
    slerp,
    slerp_norm,
)
from .training import TrainConfig, build_config, load_run  # noqa: E402

__all__ = [
    "Autoencoder", "BaseAutoencoder", "GradientPenalty", "L2Penalty", "RaekitError", "Regularizer",
    "SpectralNorm", "TrainConfig", "build_config", "build_networks", "VAE", "WAE", "train",
    "DENSITIES", "Density", "DirichletProcessMixtureDensity", "GaussianDensity",
    "GaussianMixtureDensity", "KernelDensityEstimate", "StandardNormalPrior", "TwoStageVAEDensity",
    "load_density", "make_density", "save_density",
    "decode", "encode_dataset", "reconstruct", "sample_images",
    "linear", "norm_rescaled", "slerp", "slerp_norm", "load_run", "keep_freed_memory",
]


def __getattr__(name: str):
    if name == "train":  # imported on first use: it loads Lightning
        from .training.trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
