"""Training grammar models with raekit's Lightning loop (:mod:`raekit.training.trainer`: Adam,
ReduceLROnPlateau, best/last checkpoints, CSV log), then evaluating them.

A run directory holds::

    RUN/config.yaml            the resolved GrammarConfig
    RUN/checkpoints/{best,last}.ckpt
    RUN/logs/metrics.csv
    RUN/model.pt               config + codec + best weights (weights_only loading)
    RUN/codes.pt               up to ``code_pool`` training strings and their codes
    RUN/metrics.json           skipped strings, reconstruction accuracy, valid shares
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader

from .. import __version__
from ..densities import make_density
from ..errors import RaekitError
from ..files import load_torch, save_json, save_text, save_torch
from ..training.callbacks import PreciseBatchNorm
from ..training.trainer import AutoencoderModule, make_trainer, quiet_lightning
from .characters import Characters, make_characters
from .config import GrammarConfig, config_from_dict
from .data import OneHotSequences, default_path, encode_all, select_strings, split
from .grammars import get_grammar
from .metrics import (
    decode_strings,
    encode_strings,
    exact_reconstruction,
    reconstruction_accuracy,
    valid_share,
)
from .models import MODELS, build_model

MODEL_FILE = "model.pt"
CODES_FILE = "codes.pt"  # training strings and their codes: ex-post densities and BO start here
FORMAT = 1


def make_codec(cfg: GrammarConfig, strings: list[str] | None = None):
    """The grammar of ``cfg.data`` — or, for the character model, the reference's alphabet
    (``charset=data``: the vocabulary of ``strings``)."""
    if MODELS[cfg.model].grammar:
        return get_grammar(cfg.data)
    return make_characters(cfg.data, cfg.charset, strings, cfg.char_max_length)


def codec_state(codec) -> dict[str, Any]:
    return codec.state() if isinstance(codec, Characters) else {"grammar": codec.name}


def codec_from_state(state: dict[str, Any]):
    if "grammar" in state:
        return get_grammar(state["grammar"])
    return Characters.from_state(state)


def train(cfg: GrammarConfig, *, trainer_overrides: dict | None = None) -> Path:
    """Train ``cfg``'s model, write the run directory and its metrics; return its path."""
    with quiet_lightning():
        return _train(cfg, trainer_overrides)


def _train(cfg: GrammarConfig, trainer_overrides: dict | None) -> Path:
    run_dir = cfg.run_dir
    if (run_dir / MODEL_FILE).exists():
        raise RaekitError(f"{run_dir} already holds a finished run; choose another --name/--out")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    strings = select_strings(cfg.data_path or default_path(cfg.data), cfg.limit, cfg.order)
    codec = make_codec(cfg, strings)
    splits = split(encode_all(codec, strings, progress=cfg.progress), holdout=cfg.holdout,
                   val_size=cfg.val_size, val_split=cfg.val_split)
    model = build_model(cfg.model, codec, cfg.sizes, **cfg.hyper())
    module = AutoencoderModule(model, lr=cfg.lr, plateau_factor=cfg.plateau_factor,
                               plateau_patience=cfg.plateau_patience,
                               plateau_min_delta=cfg.plateau_min_delta,
                               plateau_min_lr=cfg.plateau_min_lr, plateau_mode=cfg.plateau_mode,
                               config=cfg.to_dict())
    run_dir.mkdir(parents=True, exist_ok=True)
    save_text(cfg.to_yaml(), run_dir / "config.yaml")
    R = codec.num_rules
    callbacks = []
    if cfg.precise_bn:
        callbacks.append(PreciseBatchNorm(OneHotSequences(splits.train_idx, R),
                                          images=cfg.precise_bn_strings, seed=cfg.seed))
    if cfg.track_reconstruction:
        callbacks.append(TrackReconstruction(codec, splits, cfg.track_reconstruction,
                                             seed=cfg.seed))
    trainer = make_trainer(cfg, run_dir, callbacks=callbacks, **(trainer_overrides or {}))
    train_dl = DataLoader(OneHotSequences(splits.train_idx, R), batch_size=cfg.batch_size,
                          shuffle=True)
    val_dl = DataLoader(OneHotSequences(splits.val_idx, R), batch_size=cfg.batch_size)
    trainer.fit(module, train_dataloaders=train_dl, val_dataloaders=val_dl)
    if trainer.interrupted:
        raise RaekitError(f"training interrupted; partial checkpoints are in {run_dir}")
    best = load_torch(run_dir / "checkpoints" / "best.ckpt")
    model.load_state_dict({k.removeprefix("model."): v for k, v in best["state_dict"].items()})
    save_torch({"raekit": {"version": __version__, "format": FORMAT}, "config": cfg.to_dict(),
                "codec": codec_state(codec), "state_dict": model.state_dict()},
               run_dir / MODEL_FILE)
    pool = splits.train[:cfg.code_pool]
    save_torch({"strings": pool, "codes": encode_strings(model, codec, pool)},
               run_dir / CODES_FILE)
    metrics = evaluate(model, codec, cfg, splits.test or splits.val, pool)
    metrics.update(strings=len(strings), skipped=splits.skipped, train=len(splits.train),
                   val=len(splits.val), test=len(splits.test))
    save_json(metrics, run_dir / "metrics.json")
    return run_dir


class TrackReconstruction(Callback):
    """After each validation, log the share of ``n`` fixed training strings and of ``n``
    validation strings that the model (in evaluation mode, as it will be used) reconstructs
    exactly by argmax decoding: ``train_exact`` and ``val_exact`` in metrics.csv — the curve of
    reconstruction against epochs. Deterministic: a resumed run logs the same numbers."""

    def __init__(self, codec, splits, n: int, *, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(splits.train), generator=g)[:n]
        R = codec.num_rules
        self.codec = codec
        self.sets = {
            "train_exact": (torch.nn.functional.one_hot(splits.train_idx[pick], R).float(),
                            [splits.train[i] for i in pick.tolist()]),
            "val_exact": (torch.nn.functional.one_hot(splits.val_idx[:n], R).float(),
                          splits.val[:n]),
        }

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        for key, (x, strings) in self.sets.items():
            pl_module.log(key, exact_reconstruction(pl_module.model, self.codec, x, strings),
                          on_epoch=True)


def evaluate(model: nn.Module, codec, cfg: GrammarConfig, held_out: list[str],
             train_strings: list[str]) -> dict[str, Any]:
    """Reconstruction accuracy on held-out strings; valid shares of prior and ex-post samples."""
    out: dict[str, Any] = {}
    items = held_out[:cfg.eval_items]
    for sample in (True, False):
        key = "reconstruction_accuracy" + ("" if sample else "_argmax")
        out[key] = reconstruction_accuracy(model, codec, items, decodes=cfg.eval_decodes,
                                           sample=sample, seed=cfg.seed)
    codes = encode_strings(model, codec, train_strings)
    for name in cfg.eval_densities:
        z = make_density(name).fit(codes.numpy()).sample(cfg.eval_samples, seed=cfg.seed)
        decoded = decode_strings(model, codec, z, sample=True,
                                 generator=torch.Generator().manual_seed(cfg.seed))
        out[f"valid_{name}"] = codec_valid_share(codec, decoded, cfg.data)
    return out


def codec_valid_share(codec, decoded: list[str | None], data: str) -> float:
    """The share of valid decodings; a character-decoded expression by the reference's rule for
    the character model (:func:`raekit.grammar.characters.character_expression_is_valid`)."""
    return valid_share(decoded, data, codec)


@dataclass
class GrammarRun:
    path: Path
    config: GrammarConfig
    codec: Any
    model: nn.Module

    def training_codes(self) -> tuple[list[str], torch.Tensor]:
        """Training strings and their codes (N, d), as saved at the end of training."""
        blob = load_torch(self.path / CODES_FILE)
        return list(blob["strings"]), blob["codes"]


def load_run(path: str | os.PathLike) -> GrammarRun:
    """A finished run: config, codec and the model with its best weights (eval mode)."""
    path = Path(path)
    file = path / MODEL_FILE
    if not file.is_file():
        raise RaekitError(f"{path} is not a finished grammar run (no {MODEL_FILE})")
    blob = load_torch(file)
    if not isinstance(blob, dict) or blob.get("raekit", {}).get("format") != FORMAT:
        raise RaekitError(f"{file} was not written by this raekit version's grammar models")
    cfg = config_from_dict(blob["config"])
    codec = codec_from_state(blob["codec"])
    model = build_model(cfg.model, codec, cfg.sizes, **cfg.hyper())
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise RaekitError(f"{file} does not match its config: {str(e).splitlines()[0]}") from None
    return GrammarRun(path, cfg, codec, model.eval())
