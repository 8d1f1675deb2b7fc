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

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: set it straight back
    os.umask(mask)
    return mask


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success make it durable and rename it onto
    ``path``.

    The file is flushed to disk before the rename and the folder after it, so a crash at any
    moment leaves the old file or the new one under ``path``, never a truncated one. The file
    gets the permissions the user's umask gives (not the temporary file's 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(path.parent)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` left below ``folder`` when the process
    was killed mid-write (``.<name>.<random>.tmp``); return them."""
    stale = [p for p in Path(folder).rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


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
