"""A run directory and what can be done with it once training has finished.

``model.pt`` is a plain dict of tensors and primitives, loaded with ``weights_only=True``:
config + image shape + state dict is all it takes to rebuild the model (nanoGPT style), so a run
directory copied to another machine generates without its training data. ``examples.pt`` keeps
a few held-out images (for interpolation strips and pictures). A run also keeps its
fitted ex-post densities (``densities/<name>.pt``), each tied to the weights it was fitted for
by the digest of ``model.pt``::

    run = load_run("runs/digits-rae-l2")
    model = run.load_model()
    density, info = run.fit_density("gmm", model)   # fitted on the training codes, stored
    density = run.density("gmm", model)              # the stored one (fitted first if missing)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..data import Splits, first_images, load_splits, loader
from ..densities import DENSITIES, Density, load_density, save_density
from ..errors import RaekitError
from ..files import file_digest, load_torch, save_torch
from ..models.registry import build_model, latent_dim
from ..sampling import encode_dataset
from .config import TrainConfig, build_config

MODEL_FILE = "model.pt"  # config + image shape + best weights
CONFIG_FILE = "config.yaml"
EXAMPLES_FILE = "examples.pt"  # held-out images (uint8) kept with the run
SUMMARY_FILE = "summary.json"  # how training went: best epoch, loss terms, files
DENSITY_DIR = "densities"
FORMAT = 2  # bumped when model.pt's layout changes (2: the image shape is stored)
EXAMPLES = 64  # held-out images kept in examples.pt
#: density parameters that say where it runs, not what it is (never make a stored one stale)
RUN_TIME_PARAMS = ("device", "progress")


def write_model_file(path: Path, config: TrainConfig, model: nn.Module,
                     shape: tuple[int, int, int], **meta: Any) -> None:
    """``model.pt``: everything that rebuilds ``model`` (config, image shape) and its weights."""
    save_torch({"raekit": {"version": __version__, "format": FORMAT}, "config": config.to_dict(),
                "image_shape": list(shape), "state_dict": model.state_dict(), **meta}, path)


def write_examples(path: Path, dataset, n: int = EXAMPLES) -> None:
    """The first ``n`` images of a held-out split as uint8 (n, C, H, W)."""
    x = first_images(dataset, n)
    save_torch({"images": x.clamp(0, 1).mul(255).round().to(torch.uint8)}, path)


@dataclass
class DensityFit:
    """What fitting a run's density did (for a command to report)."""

    name: str
    path: Path
    n_codes: int
    dim: int
    seconds: float
    val_loglik: float


@dataclass
class Run:
    path: Path
    config: TrainConfig

    @cached_property
    def splits(self) -> Splits:
        """The data splits: needs the dataset's files (generation does not)."""
        return load_splits(self.config)

    def _model_blob(self, map_location: str | torch.device = "cpu") -> dict:
        file = self.path / MODEL_FILE
        if not file.is_file():
            raise RaekitError(f"{file} is missing: the run has not finished (resume it with "
                              f"raekit train --resume {self.path})")
        blob = load_torch(file, map_location=map_location)
        meta = blob.get("raekit", {}) if isinstance(blob, dict) else {}
        if meta.get("format") != FORMAT or "state_dict" not in blob:
            raise RaekitError(f"{file} was written by an incompatible raekit version "
                              f"(format {meta.get('format')!r}, this version reads {FORMAT}); "
                              "train it again")
        return blob

    @cached_property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the model was trained on (from ``model.pt``)."""
        return tuple(int(v) for v in self._model_blob()["image_shape"])

    def load_model(self, map_location: str | torch.device = "cpu") -> nn.Module:
        """The model with its best-validation weights, in eval mode (no data needed)."""
        blob = self._model_blob(map_location)
        self.__dict__["image_shape"] = tuple(int(v) for v in blob["image_shape"])
        model = build_model(self.config, self.image_shape)
        try:
            model.load_state_dict(blob["state_dict"])
        except RuntimeError as e:
            raise RaekitError(f"{self.path / MODEL_FILE} does not match the model its config "
                              f"describes: {str(e).splitlines()[0]}") from None
        return model.to(map_location).eval()

    def summary(self) -> dict:
        """``summary.json``: the best epoch and its held-out loss terms, the files written."""
        import json

        path = self.path / SUMMARY_FILE
        if not path.is_file():
            raise RaekitError(f"{path} is missing: the run has not finished")
        return json.loads(path.read_text())

    def model_digest(self) -> str:
        """Identifies the weights (a retrained run has other codes, so other densities)."""
        return file_digest(self.path / MODEL_FILE)

    def latent_dim(self) -> int:
        return latent_dim(self.config, self.image_shape)

    def examples(self) -> torch.Tensor:
        """The held-out images kept with the run: float (n, C, H, W) in [0, 1]."""
        path = self.path / EXAMPLES_FILE
        if not path.is_file():
            raise RaekitError(f"{path} is missing (the run was trained by an older raekit?)")
        return load_torch(path)["images"].float() / 255

    # ----------------------------------------------------------------- ex-post densities

    def density_path(self, name: str) -> Path:
        return self.path / DENSITY_DIR / f"{name}.pt"

    def codes(self, model: nn.Module, split: str = "train", *, batch_size: int = 256,
              progress: bool = False) -> torch.Tensor:
        """Codes (N, d) of one split's images."""
        ds = getattr(self.splits, split)
        return encode_dataset(model, loader(ds, self.config, batch_size=batch_size),
                              progress=progress)

    def fit_density(self, name: str, model: nn.Module, *, batch_size: int = 256,
                    progress: bool = False) -> tuple[Density, DensityFit]:
        """Fit the density ``name`` on the training codes and store it in ``densities/``."""
        if name not in DENSITIES:
            raise RaekitError(f"unknown density {name!r}; choose one of {sorted(DENSITIES)}")
        density = DENSITIES[name].from_config(self.config)
        t = time.perf_counter()
        z = self.codes(model, "train", batch_size=batch_size, progress=progress)
        density.fit(z)
        seconds = time.perf_counter() - t
        val = float(density.score(self.codes(model, "val", batch_size=batch_size,
                                             progress=progress)))
        path = self.density_path(name)
        save_density(density, path, model_digest=self.model_digest(), split="train",
                     n_codes=len(z), dim=int(z.shape[1]), val_loglik=val,
                     fit_seconds=round(seconds, 3))
        return density, DensityFit(name, path, len(z), int(z.shape[1]), seconds, val)

    def stored_density(self, name: str) -> Density | None:
        """The stored density ``name``, None if there is none; refused if it does not fit."""
        path = self.density_path(name)
        if not path.exists():
            return None
        density, meta = load_density(path, return_meta=True)
        hint = f"refit it with: raekit fit-density {self.path} --density {name} --force"
        if density.n_features_in_ != self.latent_dim():
            raise RaekitError(f"{path} was fitted on {density.n_features_in_}-D codes but the "
                              f"model's codes are {self.latent_dim()}-D; {hint}")
        if meta.get("model_digest") not in (None, self.model_digest()):
            raise RaekitError(f"{path} was fitted on the codes of another model.pt (was the run "
                              f"retrained?); {hint}")
        # A density stored by an older raekit may have other settings than today's (dpgmm's
        # max_iter was 2000 before it took the reference's 100): refuse rather than mix them.
        now = DENSITIES[name].from_config(self.config).get_params()
        then = density.get_params()
        changed = sorted(k for k in now if k not in RUN_TIME_PARAMS and then.get(k) != now[k])
        if changed:
            diff = ", ".join(f"{k}={then.get(k)!r} (now {now[k]!r})" for k in changed)
            raise RaekitError(f"{path} was fitted with other settings: {diff}; {hint}")
        return density

    def density(self, name: str, model: nn.Module, **fit_options: Any) -> Density:
        """The stored density ``name``, fitted and stored first if there is none."""
        return self.stored_density(name) or self.fit_density(name, model, **fit_options)[0]


def load_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RaekitError(f"no such run directory: {path}")
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise RaekitError(f"{path} is not a raekit run directory (no {CONFIG_FILE})")
    return Run(path, build_config(str(cfg_file)))
