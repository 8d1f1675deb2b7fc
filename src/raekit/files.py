"""Files: atomic writes, loading without unpickling, digests, and the cache folder.

Every file raekit writes goes to a temporary file in the same folder first and is then renamed
onto its final name, so an interrupted write never leaves a half-written file under that name.
Files are loaded with ``torch.load(weights_only=True)``: a file that holds pickled code is refused,
never executed.

The cache (``$RAEKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/raekit``, else ``~/.cache/raekit``)
keeps what raekit can recompute — trained feature networks and real-data features — under names
derived from everything they depend on (:func:`key_digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    """Load a file written by :func:`save_torch` (or a Lightning checkpoint) without running
    code."""
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


def save_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically."""
    save_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """A short SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def key_digest(key: dict[str, Any], length: int = 16) -> str:
    """A stable short hash of a JSON-able description."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def cache_dir() -> Path:
    """Where raekit keeps what it can recompute (see the module docstring)."""
    root = os.environ.get("RAEKIT_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "raekit"
