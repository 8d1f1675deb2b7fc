"""One dataclass holds a whole image training run's settings, passed whole and saved whole.

Settings are layered (:mod:`raekit.settings`), later layers winning: the dataclass defaults, the
shipped preset for the run's ``dataset`` and ``model`` (``raekit/configs/train/<dataset>/<model>
.yaml``: the paper's published values), a user's YAML file, then ``key=value`` overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..errors import RaekitError
from ..settings import dump_yaml, layered, preset_path, read_yaml, resolve_config_file

PRESETS = "train"  # the folder of raekit/configs that holds the training presets
LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")


@dataclass
class TrainConfig:
    # what to train
    model: str = "rae-l2"  # a key of raekit.models.MODELS
    dataset: str = "digits"  # a key of raekit.data.DATASETS
    data_root: Union[str, None] = None  # folder of the standard files, or the .npz / image folder
    download: bool = True  # fetch a missing standard dataset through torchvision when online
    image_size: Union[int, None] = None  # npz/folder: resize to this size
    channels: Union[int, None] = None  # folder: 1 (grey) or 3 (RGB)
    network: Union[str, None] = None  # a key of raekit.models.NETWORKS, or your own as
    #                                   package.module:function; default: by image size
    width: int = 1  # divide every channel count by this (1 = the paper's network)
    filters: Union[int, None] = None  # the convolutions' base filters (reference num_filters;
    #                                   None: the network's, 128); dense layers keep their size
    center_input: Union[bool, None] = None  # encoder maps x to 2x − 1; None: as the reference
    #                                         network does (MNIST/CIFAR yes, CelebA no)
    latent_dim: Union[int, None] = None  # default: the dataset's (paper: 16 / 128 / 64)
    # the loss: RAE family  L_REC + beta·L_Z + reg_weight·L_REG;  VAEs  L_REC + kl_weight·KL;
    # WAE  L_REC + mmd_weight·MMD²
    beta: float = 0.0
    reg_weight: float = 0.0  # λ
    kl_weight: float = 1.0  # VAE, CV-VAE, 2-stage VAE
    mmd_weight: float = 1.0  # WAE
    latent_penalty: str = "mean"  # "mean" (reference code) or "half_sum" (the paper's ½‖z‖²)
    reconstruction: Union[str, None] = None  # "mean", "sum" or "wae-celeba"; None: the model's own
    gp_every: int = 1  # lazy gradient penalty: every k-th step, scaled by k
    sn_scope: str = "all"  # spectral norm on "all" layers (reference code) or the "decoder"
    sn_convention: str = "keras"  # "keras" (reference: the kernel's last axis, (kh·kw·out, in)
    #                               for transposed convs) or "torch" (PyTorch's spectral_norm)
    sigma: float = 0.7  # constant-variance VAE's fixed encoder σ
    stage2_kl_weight: float = 1.5e-3  # 2-stage VAE: the second VAE's KL weight
    stage2_hidden: int = 1024  # 2-stage VAE: width of the second VAE's MLPs
    stage2_epochs: int = 100
    stage2_batch_size: int = 64
    stage2_lr: float = 1e-3  # the second VAE's Adam rate (reference 1e-4)
    stage2_reconstruction: str = "sum"  # over code dimensions: "mean" (reference: Keras' mse)
    #                                     or "sum"
    stage2_val_fraction: float = 0.0  # the last codes held out to validate (reference 0.1)
    stage2_plateau_patience: Union[int, None] = None  # Keras ReduceLROnPlateau(0.5) on that
    #                                                   validation loss (reference 3); None: off
    # optimisation
    lr: float = 5e-4
    batch_size: int = 100
    epochs: int = 100
    val_size: Union[float, None] = None  # held out of training: a count, a fraction if < 1, or
    #                                      None for min(10,000, a sixth of the pool)
    plateau_factor: float = 0.5  # learning rate × this when the validation loss stalls
    plateau_patience: int = 5  # … for this many epochs
    plateau_min_delta: float = 1e-4  # the improvement that counts
    plateau_mode: str = "keras"  # "keras" (reference: absolute min_delta) or "torch" (relative)
    precise_bn: bool = True  # batch-norm statistics recomputed over training images before
    #                          each validation (the paper presets keep Keras' running averages)
    precise_bn_images: int = 4096  # training images those statistics are averaged over
    seed: int = 0
    split_seed: int = 0  # the validation split; keep it fixed to compare models
    # where and how
    out: str = "runs"
    name: Union[str, None] = None  # run directory name; default "<dataset>-<model>"
    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = 1  # machines (multi-node DDP; Lightning detects SLURM, torchelastic, …)
    strategy: str = "auto"
    # Lightning's precision, or "auto": bf16-mixed where the device computes bfloat16 natively
    # (CUDA with bf16, a CPU with AMX or AVX-512 BF16), else 32-true (raekit.training.precision)
    precision: str = "auto"
    num_workers: int = 0
    logger: str = "csv"  # csv, or csv plus tensorboard, wandb (offline) or mlflow (local)
    progress: bool = True  # a progress bar; off: one line per epoch
    extra: dict = field(default_factory=dict)  # free-form notes carried with the run

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / (self.name or f"{self.dataset}-{self.model}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def validate(self) -> TrainConfig:
        """Check names and ranges; raise a one-line :class:`RaekitError` naming the bad key."""
        from ..data import DATASETS
        from ..models.nets import NETWORKS, is_user_network, user_network_function
        from ..models.registry import MODELS

        for key, known in (("model", MODELS), ("dataset", DATASETS)):
            if getattr(self, key) not in known:
                raise RaekitError(f"unknown {key} {getattr(self, key)!r}; choose one of "
                                  f"{', '.join(sorted(known))}")
        if self.network is not None and self.network not in NETWORKS:
            if not is_user_network(self.network):
                raise RaekitError(f"unknown network {self.network!r}; choose one of "
                                  f"{', '.join(sorted(NETWORKS))} or name your own as "
                                  "package.module:function")
            user_network_function(self.network)  # importable now, before any data is read
        checks = [
            ("beta", self.beta >= 0, "≥ 0"),
            ("reg_weight", self.reg_weight >= 0, "≥ 0"),
            ("kl_weight", self.kl_weight >= 0, "≥ 0"),
            ("mmd_weight", self.mmd_weight >= 0, "≥ 0"),
            ("width", self.width >= 1, "a positive integer"),
            ("filters", self.filters is None or self.filters >= 1, "≥ 1"),
            ("latent_dim", self.latent_dim is None or self.latent_dim >= 1, "≥ 1"),
            ("image_size", self.image_size is None or self.image_size >= 1, "≥ 1"),
            ("channels", self.channels in (None, 1, 3), "1 or 3"),
            ("gp_every", self.gp_every >= 1, "≥ 1"),
            ("sigma", self.sigma > 0, "> 0"),
            ("stage2_kl_weight", self.stage2_kl_weight >= 0, "≥ 0"),
            ("stage2_hidden", self.stage2_hidden >= 1, "≥ 1"),
            ("stage2_epochs", self.stage2_epochs >= 1, "≥ 1"),
            ("stage2_batch_size", self.stage2_batch_size >= 1, "≥ 1"),
            ("stage2_lr", self.stage2_lr > 0, "> 0"),
            ("stage2_reconstruction", self.stage2_reconstruction in ("mean", "sum"),
             "'mean' or 'sum'"),
            ("stage2_val_fraction", 0 <= self.stage2_val_fraction < 1, "in [0, 1)"),
            ("stage2_plateau_patience", self.stage2_plateau_patience is None
             or self.stage2_plateau_patience >= 1, "≥ 1 or none"),
            ("stage2_plateau_patience", self.stage2_plateau_patience is None
             or self.stage2_val_fraction > 0, "none unless stage2_val_fraction > 0"),
            ("lr", self.lr > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, "≥ 1"),
            ("epochs", self.epochs >= 1, "≥ 1"),
            ("val_size", self.val_size is None or self.val_size > 0,
             "> 0 (a count, or a fraction below 1)"),
            ("plateau_factor", 0 < self.plateau_factor < 1, "in (0, 1)"),
            ("plateau_patience", self.plateau_patience >= 1, "≥ 1"),
            ("plateau_min_delta", self.plateau_min_delta >= 0, "≥ 0"),
            ("plateau_mode", self.plateau_mode in ("keras", "torch"), "'keras' or 'torch'"),
            ("num_workers", self.num_workers >= 0, "≥ 0"),
            ("num_nodes", self.num_nodes >= 1, "≥ 1"),
            ("precise_bn_images", self.precise_bn_images >= 1, "≥ 1"),
            ("logger", self.logger in LOGGERS, f"one of {', '.join(LOGGERS)}"),
            ("latent_penalty", self.latent_penalty in ("mean", "half_sum"), "'mean' or 'half_sum'"),
            ("sn_scope", self.sn_scope in ("all", "decoder"), "'all' or 'decoder'"),
            ("sn_convention", self.sn_convention in ("keras", "torch"), "'keras' or 'torch'"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise RaekitError(f"{key} must be {expected}, got {getattr(self, key)!r}")
        self._check_weights(MODELS[self.model].weights)
        return self

    def _check_weights(self, used: tuple[str, ...]) -> None:
        """Refuse a loss weight the model does not read (``beta`` was once the baselines' KL
        and MMD weight: a VAE or WAE config that still sets it gets a hint)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for key in ("beta", "reg_weight", "kl_weight", "mmd_weight"):
            if key not in used and getattr(self, key) != defaults[key]:
                own = ", ".join(used) or "none"
                raise RaekitError(f"model {self.model!r} does not use {key} (its weights: {own}); "
                                  "the baselines' weights are named kl_weight (VAEs) and "
                                  "mmd_weight (WAE)")


def build_config(config_file: str | None = None, overrides: dict[str, Any] | None = None,
                 base: dict[str, Any] | None = None) -> TrainConfig:
    """Layer defaults, the shipped preset, ``base``, ``config_file`` and ``overrides``; validate.

    ``config_file`` is a YAML file or a shipped preset's name such as ``mnist/rae-l2``.
    """
    user = read_yaml(resolve_config_file(config_file, folder=PRESETS)) if config_file else {}
    layers = [base or {}, user, dict(overrides or {})]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    preset = preset_path(f"{PRESETS}/{merged.get('dataset', TrainConfig.dataset)}/"
                         f"{merged.get('model', TrainConfig.model)}")
    return layered(TrainConfig, [read_yaml(preset) if preset else {}, *layers]).validate()


def config_keys_help() -> str:
    """Every key with its default, for ``--help``."""
    return ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(TrainConfig)
                     if f.name != "extra")
