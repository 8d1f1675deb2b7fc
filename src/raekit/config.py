"""One dataclass holds a whole training run's settings (nanoGPT style: passed whole, saved whole).

Settings are layered, later layers winning: the dataclass defaults, the shipped preset for the
run's ``dataset``/``model`` (``raekit/configs/<dataset>/<model>.yaml``, the paper's published
values), a user's YAML file, then ``key=value`` overrides from the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import RaekitError


@dataclass
class TrainConfig:
    # what to train
    model: str = "rae-l2"  # a key of raekit.zoo.MODELS
    dataset: str = "digits"  # a key of raekit.data.DATASETS
    data_root: Union[str, None] = None  # folder of the standard files, or the .npz / image folder
    download: bool = True  # fetch a missing standard dataset through torchvision when online
    image_size: Union[int, None] = None  # npz/folder: resize to this size
    channels: Union[int, None] = None  # folder: 1 (grey) or 3 (RGB)
    network: Union[str, None] = None  # a key of raekit.nets.NETWORKS; default: by image size
    width: int = 1  # divide every channel count by this (1 = the paper's network)
    latent_dim: Union[int, None] = None  # default: the dataset's (paper: 16 / 128 / 64)
    # the loss L = L_REC + beta·L_Z + reg_weight·L_REG
    beta: float = 0.0
    reg_weight: float = 0.0  # λ
    latent_penalty: str = "mean"  # "mean" (reference code) or "half_sum" (the paper's ½‖z‖²)
    reconstruction: Union[str, None] = None  # "mean", "sum" or "wae-celeba"; None: the model's own
    gp_every: int = 1  # lazy gradient penalty: every k-th step, scaled by k
    sn_scope: str = "all"  # spectral norm on "all" layers (reference code) or the "decoder"
    sigma: float = 0.7  # constant-variance VAE's fixed encoder σ
    stage2_kl_weight: float = 1.5e-3  # 2-stage VAE: the second VAE's KL weight
    stage2_hidden: int = 1024  # 2-stage VAE: width of the second VAE's MLPs
    stage2_epochs: int = 100
    stage2_batch_size: int = 64
    # optimisation
    lr: float = 5e-4
    batch_size: int = 100
    epochs: int = 100
    val_size: Union[float, None] = None  # held out of training: a count, a fraction if < 1, or
    #                                      None for min(10,000, a sixth of the pool)
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    seed: int = 0
    split_seed: int = 0  # the validation split; keep it fixed to compare models
    # where and how
    out: str = "runs"
    name: Union[str, None] = None  # run directory name; default "<dataset>-<model>"
    accelerator: str = "auto"
    devices: str = "1"
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes carried with the run

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / (self.name or f"{self.dataset}-{self.model}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Check ranges; raise a one-line :class:`RaekitError` naming the bad key."""
        checks = [
            ("beta", self.beta >= 0, "≥ 0"),
            ("reg_weight", self.reg_weight >= 0, "≥ 0"),
            ("width", self.width >= 1, "a positive integer"),
            ("latent_dim", self.latent_dim is None or self.latent_dim >= 1, "≥ 1"),
            ("image_size", self.image_size is None or self.image_size >= 1, "≥ 1"),
            ("channels", self.channels in (None, 1, 3), "1 or 3"),
            ("gp_every", self.gp_every >= 1, "≥ 1"),
            ("sigma", self.sigma > 0, "> 0"),
            ("stage2_kl_weight", self.stage2_kl_weight >= 0, "≥ 0"),
            ("stage2_hidden", self.stage2_hidden >= 1, "≥ 1"),
            ("stage2_epochs", self.stage2_epochs >= 1, "≥ 1"),
            ("stage2_batch_size", self.stage2_batch_size >= 1, "≥ 1"),
            ("lr", self.lr > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, "≥ 1"),
            ("epochs", self.epochs >= 1, "≥ 1"),
            ("val_size", self.val_size is None or self.val_size > 0, "> 0 (a count, or a fraction below 1)"),
            ("plateau_factor", 0 < self.plateau_factor < 1, "in (0, 1)"),
            ("plateau_patience", self.plateau_patience >= 0, "≥ 0"),
            ("num_workers", self.num_workers >= 0, "≥ 0"),
            ("latent_penalty", self.latent_penalty in ("mean", "half_sum"), "'mean' or 'half_sum'"),
            ("sn_scope", self.sn_scope in ("all", "decoder"), "'all' or 'decoder'"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise RaekitError(f"{key} must be {expected}, got {getattr(self, key)!r}")
        return self


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
TYPES = get_type_hints(TrainConfig)


def _coerce(key: str, value: Any) -> Any:
    """Turn a YAML or command-line value into the field's type, or raise a clear error."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RaekitError(f"unknown config key {key!r}{hint}; known keys: {', '.join(FIELDS)}")
    kind = TYPES[key]
    optional = get_origin(kind) is Union and type(None) in get_args(kind)
    if optional:
        kind = next(a for a in get_args(kind) if a is not type(None))
    if optional and (value is None or (isinstance(value, str)
                                       and value.strip().lower() in ("none", "null", "~", ""))):
        return None
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) else int(value)
        if kind is float:
            return float(value)
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError
            return value
        return str(value)
    except (TypeError, ValueError):
        raise RaekitError(f"{key} must be {kind.__name__}, got {value!r}") from None


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["beta=1e-4", "width=4"]`` → ``{"beta": "1e-4", "width": "4"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RaekitError(f"expected key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RaekitError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RaekitError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RaekitError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def preset_path(dataset: str, model: str) -> Path | None:
    """The shipped config for ``dataset``/``model``, if there is one."""
    p = resources.files("raekit") / "configs" / dataset / f"{model}.yaml"
    return Path(str(p)) if p.is_file() else None


def list_presets() -> list[str]:
    root = resources.files("raekit") / "configs"
    return sorted(f"{d.name}/{f.name[:-5]}" for d in root.iterdir() if d.is_dir()
                  for f in d.iterdir() if f.name.endswith(".yaml"))


def resolve_config_file(name: str) -> Path:
    """A path, or a shipped preset's name such as ``mnist/rae-l2``."""
    if Path(name).is_file():
        return Path(name)
    if "/" in name and not name.endswith((".yaml", ".yml")):
        p = preset_path(*name.split("/", 1))
        if p is not None:
            return p
    raise RaekitError(f"config {name!r} is neither a file nor a shipped preset; presets: "
                      + ", ".join(list_presets()))


def build_config(config_file: str | None = None, overrides: dict[str, Any] | None = None,
                 base: dict[str, Any] | None = None) -> TrainConfig:
    """Layer defaults, the shipped preset, ``config_file`` and ``overrides``; validate."""
    overrides = dict(overrides or {})
    user = read_yaml(resolve_config_file(config_file)) if config_file else {}
    layers = [base or {}, user, overrides]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    preset_file = preset_path(str(merged.get("dataset", TrainConfig.dataset)),
                              str(merged.get("model", TrainConfig.model)))
    values: dict[str, Any] = {}
    for layer in [read_yaml(preset_file) if preset_file else {}, *layers]:
        for key, value in layer.items():
            values[key] = _coerce(key, value)
    return TrainConfig(**values).validate()
