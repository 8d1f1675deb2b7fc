"""Settings of a grammar-model run: one dataclass, passed whole and saved with the weights.

Layers: the dataclass defaults < :data:`SCALES` for the data set and scale (``paper``: the
Grammar VAE's settings, paper-facts §4; ``small``: a CPU-sized run) < :data:`MODEL_DEFAULTS`
< explicit overrides (command-line options).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import RaekitError
from .models import MODELS, PAPER_SIZES, NetSizes


@dataclass
class GrammarConfig:
    data: str = "expressions"  # "expressions" or "zinc"
    model: str = "grae"  # a key of raekit.grammar.models.MODELS
    scale: str = "small"  # a key of SCALES[data]
    data_path: Union[str, None] = None  # default $RAEKIT_DATA/<file>
    limit: Union[int, None] = None  # use only the file's first `limit` strings
    holdout: int = 5000  # the file's first strings, held out (reconstruction accuracy)
    val_size: int = 1000  # the last strings: validation loss (LR schedule, best checkpoint)
    # networks
    latent_dim: int = 25
    filters: tuple = (2, 3, 4)
    kernels: tuple = (2, 3, 4)
    dense: int = 100
    hidden: int = 100
    batch_norm: bool = True
    char_max_length: int = 19  # the character model's length limit (120 for molecules)
    # loss: GRAE  L = CE + beta·mean(z²) + reg_weight·ΣW²_decoder;  VAEs  L = CE + kl_weight·KL
    beta: float = 1e-2  # chosen for this CE normalisation (sum over steps); not published
    reg_weight: float = 1e-5  # chosen, not published
    kl_weight: float = 1.0
    sigma: float = 0.7  # GCVVAE's constant σ
    # optimisation (Adam, ReduceLROnPlateau)
    lr: float = 1e-3
    batch_size: int = 600
    epochs: int = 50
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    seed: int = 0
    # evaluation after training
    eval_items: int = 500  # held-out strings for reconstruction accuracy
    eval_decodes: int = 10  # sampled decodings per held-out string
    eval_samples: int = 500  # prior / ex-post codes for the share of valid decodings
    code_pool: int = 20000  # training strings whose codes are saved (densities, BO)
    eval_densities: tuple = ("prior", "gaussian", "gmm")  # names in raekit.density.DENSITIES
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
    def sizes(self) -> NetSizes:
        return NetSizes(self.latent_dim, tuple(self.filters), tuple(self.kernels), self.dense,
                        self.hidden, self.batch_norm)

    def hyper(self) -> dict[str, float]:
        return dict(beta=self.beta, reg_weight=self.reg_weight, kl_weight=self.kl_weight,
                    sigma=self.sigma)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("filters", "kernels", "eval_densities"):
            d[key] = list(d[key])
        return d

    def validate(self) -> "GrammarConfig":
        checks = [
            ("data", self.data in SCALES, f"one of {sorted(SCALES)}"),
            ("model", self.model in MODELS, f"one of {sorted(MODELS)}"),
            ("scale", self.scale in SCALES.get(self.data, {}), "'small' or 'paper'"),
            ("limit", self.limit is None or self.limit >= 1, "≥ 1"),
            ("holdout", self.holdout >= 0, "≥ 0"),
            ("val_size", self.val_size >= 1, "≥ 1"),
            ("latent_dim", self.latent_dim >= 1, "≥ 1"),
            ("beta", self.beta >= 0, "≥ 0"),
            ("reg_weight", self.reg_weight >= 0, "≥ 0"),
            ("kl_weight", self.kl_weight >= 0, "≥ 0"),
            ("sigma", self.sigma > 0, "> 0"),
            ("lr", self.lr > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, "≥ 1"),
            ("epochs", self.epochs >= 1, "≥ 1"),
            ("eval_decodes", self.eval_decodes >= 1, "≥ 1"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise RaekitError(f"{key} must be {expected}, got {getattr(self, key)!r}")
        return self


def _sizes(s: NetSizes) -> dict[str, Any]:
    return dict(latent_dim=s.latent_dim, filters=s.filters, kernels=s.kernels, dense=s.dense,
                hidden=s.hidden, batch_norm=s.batch_norm)


SCALES: dict[str, dict[str, dict[str, Any]]] = {
    "expressions": {
        # Grammar VAE: batch 600, 50 epochs, latent 25, GRU 100
        "paper": dict(_sizes(PAPER_SIZES["expressions"]), batch_size=600, epochs=50,
                      holdout=5000, val_size=5000, char_max_length=19),
        "small": dict(_sizes(PAPER_SIZES["expressions"]), limit=20000, batch_size=200, epochs=10,
                      holdout=1000, val_size=1000, char_max_length=19, eval_items=300),
    },
    "zinc": {
        # Grammar VAE: batch 500, 100 epochs, latent 56, GRU 501, dense 435; first 5,000 held out
        "paper": dict(_sizes(PAPER_SIZES["zinc"]), batch_size=500, epochs=100, holdout=5000,
                      val_size=10000, char_max_length=120),
        "small": dict(_sizes(PAPER_SIZES["zinc"]), hidden=128, dense=128, limit=8000,
                      batch_size=100, epochs=3, holdout=500, val_size=500, char_max_length=120,
                      eval_items=100, eval_decodes=5, eval_samples=200),
    },
}

FIELDS = {f.name: f for f in dataclasses.fields(GrammarConfig)}


def make_config(data: str = "expressions", model: str = "grae", scale: str = "small",
                **overrides: Any) -> GrammarConfig:
    """Defaults < SCALES[data][scale] < overrides (None values are ignored)."""
    if data not in SCALES:
        raise RaekitError(f"--data must be one of {sorted(SCALES)}, got {data!r}")
    if scale not in SCALES[data]:
        raise RaekitError(f"--scale must be one of {sorted(SCALES[data])}, got {scale!r}")
    values: dict[str, Any] = dict(SCALES[data][scale])
    unknown = set(overrides) - set(FIELDS)
    if unknown:
        raise RaekitError(f"unknown grammar setting(s): {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return GrammarConfig(data=data, model=model, scale=scale, **values).validate()


def config_from_dict(d: dict[str, Any]) -> GrammarConfig:
    d = {k: v for k, v in d.items() if k in FIELDS}
    for key in ("filters", "kernels", "eval_densities"):
        if key in d:
            d[key] = tuple(d[key])
    return GrammarConfig(**d).validate()
