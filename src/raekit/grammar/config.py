"""Settings of a grammar-model run: one dataclass, passed whole and saved with the weights.

The same config language as image training (:mod:`raekit.settings`): the dataclass defaults <
the shipped preset for the data set and scale (``raekit/configs/grammar/<data>/<scale>.yaml``:
``paper`` is the Grammar VAE's settings, ``small`` a CPU-sized run) < a user's YAML file <
``key=value`` overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import RaekitError
from ..settings import dump_yaml, layered, list_presets, preset_path, read_yaml, resolve_config_file

PRESETS = "grammar"  # the folder of raekit/configs that holds the grammar presets
DATASETS = ("expressions", "zinc")


@dataclass
class GrammarConfig:
    data: str = "expressions"  # "expressions" or "zinc"
    model: str = "grae"  # a key of raekit.grammar.models.MODELS
    scale: str = "small"  # the preset: raekit/configs/grammar/<data>/<scale>.yaml
    data_path: Union[str, None] = None  # default $RAEKIT_DATA/<file>
    limit: Union[int, None] = None  # use only `limit` strings of the file
    # which: "file" — its first `limit`, in the file's order (the reference's); "shuffled" —
    # drawn from the whole file in a fixed random order (raekit's small presets: the
    # expression file is enumerated, so a prefix covers only some kinds of expression)
    order: str = "file"
    holdout: int = 5000  # the file's first strings, held out (reconstruction accuracy)
    # validation (LR schedule, best checkpoint): the last val_split of the strings after the
    # held-out ones, unshuffled (Keras' validation_split=0.1, the reference's); val_size, when
    # set, is a number of strings instead
    val_split: float = 0.1
    val_size: Union[int, None] = None
    # networks
    latent_dim: int = 25
    filters: tuple[int, ...] = (2, 3, 4)
    kernels: tuple[int, ...] = (2, 3, 4)
    dense: int = 100
    hidden: int = 100
    batch_norm: bool = True
    char_max_length: int = 19  # the character model's length limit (120 for molecules)
    charset: str = "reference"  # the character model's alphabet: "reference" (fixed) or "data"
    # loss: GRAE  L = REC + beta·mean(z²) + reg_weight·ΣW²_decoder;  VAEs  L = REC + kl_weight·KL
    # "reference_bce" (the Grammar VAE's) or "cross_entropy" (summed over steps); null: the
    # model's own — reference_bce for gvae, gcvvae, cvae; cross_entropy for grae, whose beta and
    # reg_weight were chosen with it
    reconstruction: Union[str, None] = None
    beta: float = 1e-2  # chosen with reconstruction=cross_entropy; not published
    reg_weight: float = 1e-5  # chosen, not published
    kl_weight: float = 1.0
    kl_reduction: str = "mean"  # KL averaged over latent dimensions (reference) or "sum"
    log_var: str = "linear"  # the encoder gives log σ² (reference) or "tanh": log σ = 5·tanh
    epsilon_std: float = 0.01  # z = μ + epsilon_std·σ·ε (reference); 1.0 for a plain VAE
    sigma: float = 0.7  # GCVVAE's constant σ
    # optimisation: Adam, Keras' ReduceLROnPlateau (the reference: factor 0.2, patience 1 for
    # expressions and 3 for ZINC, min_lr 1e-4; an improvement is a fall of min_delta)
    lr: float = 1e-3
    batch_size: int = 600
    epochs: int = 50
    plateau_factor: float = 0.2
    plateau_patience: int = 1
    plateau_min_lr: float = 1e-4
    plateau_min_delta: float = 1e-4
    # "keras1": Keras 1.2.1's callback, the reference's (a first drop after patience + 1 epochs
    # without improvement); "keras": Keras ≥ 2.1's (after patience); "torch": PyTorch's defaults
    plateau_mode: str = "keras1"
    # batch norm: the reference validates and evaluates with Keras' running averages (momentum
    # 0.01), which trail the weights; precise_bn recomputes them over precise_bn_strings
    # training strings before each validation (raekit's small presets)
    precise_bn: bool = False
    precise_bn_strings: int = 10000
    # log train_exact / val_exact (argmax reconstruction of this many training and validation
    # strings) after every epoch; 0: off
    track_reconstruction: int = 1000
    seed: int = 0
    # evaluation after training
    eval_items: int = 500  # held-out strings for reconstruction accuracy
    eval_decodes: int = 10  # sampled decodings per held-out string
    eval_samples: int = 500  # prior / ex-post codes for the share of valid decodings
    code_pool: Union[int, None] = None  # training codes saved (densities, BO); None: all
    eval_densities: tuple[str, ...] = ("prior", "gaussian", "gmm")  # raekit.densities names
    # where and how
    out: str = "runs"
    name: Union[str, None] = None
    accelerator: str = "auto"
    devices: str = "1"
    strategy: str = "auto"
    precision: str = "32-true"
    progress: bool = True

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / (self.name or f"grammar-{self.data}-{self.model}-{self.scale}")

    @property
    def sizes(self):
        from .models import NetSizes

        return NetSizes(self.latent_dim, tuple(self.filters), tuple(self.kernels), self.dense,
                        self.hidden, self.batch_norm)

    def hyper(self) -> dict[str, Any]:
        return dict(beta=self.beta, reg_weight=self.reg_weight, kl_weight=self.kl_weight,
                    sigma=self.sigma, reconstruction=self.reconstruction,
                    kl_reduction=self.kl_reduction, log_var=self.log_var,
                    epsilon_std=self.epsilon_std)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def validate(self) -> GrammarConfig:
        from ..densities import DENSITIES
        from ..optim import PLATEAU_MODES
        from .characters import CHARSETS
        from .data import ORDERS
        from .models import KL_REDUCTIONS, LOG_VARS, MODELS, RECONSTRUCTIONS

        scales = scales_of(self.data)
        checks = [
            ("data", self.data in DATASETS, f"one of {', '.join(DATASETS)}"),
            ("model", self.model in MODELS, f"one of {', '.join(sorted(MODELS))}"),
            ("scale", self.scale in scales, f"one of {', '.join(scales)}"),
            ("limit", self.limit is None or self.limit >= 1, "≥ 1"),
            ("order", self.order in ORDERS, f"one of {', '.join(ORDERS)}"),
            ("code_pool", self.code_pool is None or self.code_pool >= 1, "≥ 1 or none"),
            ("holdout", self.holdout >= 0, "≥ 0"),
            ("val_split", 0 < self.val_split < 1, "in (0, 1)"),
            ("val_size", self.val_size is None or self.val_size >= 1, "≥ 1 or null"),
            ("charset", self.charset in CHARSETS, f"one of {', '.join(CHARSETS)}"),
            ("reconstruction", self.reconstruction is None
             or self.reconstruction in RECONSTRUCTIONS,
             f"null or one of {', '.join(RECONSTRUCTIONS)}"),
            ("kl_reduction", self.kl_reduction in KL_REDUCTIONS,
             f"one of {', '.join(KL_REDUCTIONS)}"),
            ("log_var", self.log_var in LOG_VARS, f"one of {', '.join(LOG_VARS)}"),
            ("epsilon_std", self.epsilon_std > 0, "> 0"),
            ("latent_dim", self.latent_dim >= 1, "≥ 1"),
            ("filters", len(self.filters) == len(self.kernels) >= 1,
             "as many numbers as kernels"),
            ("beta", self.beta >= 0, "≥ 0"),
            ("reg_weight", self.reg_weight >= 0, "≥ 0"),
            ("kl_weight", self.kl_weight >= 0, "≥ 0"),
            ("sigma", self.sigma > 0, "> 0"),
            ("lr", self.lr > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, "≥ 1"),
            ("epochs", self.epochs >= 1, "≥ 1"),
            ("plateau_factor", 0 < self.plateau_factor < 1, "in (0, 1)"),
            ("plateau_patience", self.plateau_patience >= 1, "≥ 1"),
            ("plateau_min_lr", self.plateau_min_lr >= 0, "≥ 0"),
            ("plateau_min_delta", self.plateau_min_delta >= 0, "≥ 0"),
            ("plateau_mode", self.plateau_mode in PLATEAU_MODES,
             f"one of {', '.join(PLATEAU_MODES)}"),
            ("eval_decodes", self.eval_decodes >= 1, "≥ 1"),
            ("precise_bn_strings", self.precise_bn_strings >= 1, "≥ 1"),
            ("track_reconstruction", self.track_reconstruction >= 0, "≥ 0"),
            ("eval_densities", all(d in DENSITIES for d in self.eval_densities),
             f"names of densities ({', '.join(sorted(DENSITIES))})"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise RaekitError(f"{key} must be {expected}, got {getattr(self, key)!r}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        used = MODELS[self.model].weights
        for key in ("beta", "reg_weight", "kl_weight"):
            if key not in used and getattr(self, key) != defaults[key]:
                raise RaekitError(f"model {self.model!r} does not use {key} (its weights: "
                                  f"{', '.join(used)})")
        return self


def scales_of(data: str) -> list[str]:
    """The shipped presets (scales) of a data set."""
    return list_presets(f"{PRESETS}/{data}") if data in DATASETS else []


def build_grammar_config(config_file: str | None = None,
                         overrides: dict[str, Any] | None = None,
                         base: dict[str, Any] | None = None) -> GrammarConfig:
    """Layer defaults, the preset of the data set and scale, ``base``, ``config_file`` (a YAML
    file or a preset name such as ``expressions/paper``) and ``overrides``; validate."""
    user = read_yaml(resolve_config_file(config_file, folder=PRESETS)) if config_file else {}
    layers = [base or {}, user, dict(overrides or {})]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    data = str(merged.get("data", GrammarConfig.data))
    scale = str(merged.get("scale", GrammarConfig.scale))
    if data not in DATASETS:
        raise RaekitError(f"unknown data {data!r}; choose one of {', '.join(DATASETS)}")
    preset = preset_path(f"{PRESETS}/{data}/{scale}")
    if preset is None:
        raise RaekitError(f"unknown scale {scale!r} for {data}; choose one of "
                          f"{', '.join(scales_of(data))}")
    return layered(GrammarConfig, [read_yaml(preset), *layers]).validate()


def make_config(data: str = "expressions", model: str = "grae", scale: str = "small",
                **overrides: Any) -> GrammarConfig:
    """Python shorthand: ``make_config("expressions", "gvae", "paper", epochs=5)``."""
    return build_grammar_config(None, {"data": data, "model": model, "scale": scale,
                                       **{k: v for k, v in overrides.items() if v is not None}})


#: what runs saved before these keys existed were trained with
LEGACY = {"reconstruction": "cross_entropy", "kl_reduction": "sum", "log_var": "tanh",
          "epsilon_std": 1.0, "charset": "data", "plateau_factor": 0.5, "plateau_patience": 5,
          "plateau_min_lr": 0.0, "plateau_mode": "keras"}


def config_from_dict(d: dict[str, Any]) -> GrammarConfig:
    """The config saved with a run (keys it lacks: as such runs were trained, :data:`LEGACY`)."""
    return layered(GrammarConfig, [{**LEGACY, **d}]).validate()
