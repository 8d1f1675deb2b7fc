"""Atomic files and safe loading.

Checkpoints and results are written to a temporary file in the same folder, then renamed, so an
interrupted write never leaves a half-written file under the final name. Files are loaded with
``torch.load(weights_only=True)``: a file that holds pickled code is refused, never executed.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import RaekitError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a file written by :func:`save_torch` (or a Lightning checkpoint) without running code."""
    path = Path(path)
    if not path.is_file():
        raise RaekitError(f"no such file: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for bad files; all mean the same to a user
        if "Weights only load failed" in str(e):  # the safe unpickler met something it won't run
            raise RaekitError(f"{path} is not a plain checkpoint: it is corrupt or holds pickled "
                              "objects that could run code; refusing to load it") from None
        raise RaekitError(f"{path} is not a readable checkpoint (corrupt or truncated?)") from None


def save_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
