"""A finished run, reloaded: its config, its data splits and its model with the best weights.

``model.pt`` is a plain dict of tensors and primitives, loaded with ``weights_only=True``:
config + state dict is all it takes to rebuild the model (nanoGPT style).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig, build_config
from .data import Splits, load_splits
from .errors import RaekitError
from .io import load_torch
from .zoo import build_model

MODEL_FILE = "model.pt"  # config + best weights
FORMAT = 1  # bumped when model.pt's layout changes


@dataclass
class Run:
    path: Path
    config: TrainConfig

    @cached_property
    def splits(self) -> Splits:
        return load_splits(self.config)

    def load_model(self, map_location: str | torch.device = "cpu") -> nn.Module:
        """The model with its best-validation weights, in eval mode."""
        file = self.path / MODEL_FILE
        if not file.is_file():
            raise RaekitError(f"{file} is missing: the run has not finished (resume it with "
                              f"raekit train --resume {self.path})")
        blob = load_torch(file, map_location=map_location)
        meta = blob.get("raekit", {}) if isinstance(blob, dict) else {}
        if meta.get("format") != FORMAT or "state_dict" not in blob:
            raise RaekitError(f"{file} was written by an incompatible raekit version "
                              f"(format {meta.get('format')!r}, this version reads {FORMAT})")
        model = build_model(self.config, self.splits.shape)
        try:
            model.load_state_dict(blob["state_dict"])
        except RuntimeError as e:
            raise RaekitError(f"{file} does not match the model its config describes: "
                              f"{str(e).splitlines()[0]}") from None
        return model.to(map_location).eval()


def load_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RaekitError(f"no such run directory: {path}")
    cfg_file = path / "config.yaml"
    if not cfg_file.is_file():
        raise RaekitError(f"{path} is not a raekit run directory (no config.yaml)")
    return Run(path, build_config(str(cfg_file)))
