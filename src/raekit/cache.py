"""Where raekit keeps what it can recompute: trained feature networks and real-data features.

``$RAEKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/raekit``, else ``~/.cache/raekit``. Every entry
is written atomically (:mod:`raekit.io`) under a name derived from everything it depends on, and
is loaded without unpickling, so a stale or foreign file is recomputed, never trusted blindly.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    root = os.environ.get("RAEKIT_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "raekit"


def key_digest(key: dict[str, Any], length: int = 16) -> str:
    """A stable short hash of a JSON-able description."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
