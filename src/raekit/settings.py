"""raekit's one config language: a dataclass per kind of run, filled from layers of YAML and
``key=value`` overrides (nanoGPT style: the config is passed whole and saved whole).

Layers, later ones winning: the dataclass defaults, the shipped presets that apply to the run
(YAML files under ``raekit/configs/``), a user's YAML file, then ``key=value`` overrides from the
command line. Every value is coerced to its field's type; an unknown key or a value of the wrong
type is refused with a one-line :class:`~raekit.errors.RaekitError` that names the key (and the
closest known key, for a typo).

``raekit train``, ``raekit grammar train`` and ``raekit reproduce`` all take this form::

    raekit train [PRESET | FILE.yaml] [key=value ...]
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import RaekitError

NONE_WORDS = ("none", "null", "~", "")
TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")


def _strip_optional(kind: Any) -> tuple[Any, bool]:
    if get_origin(kind) in (Union, types.UnionType) and type(None) in get_args(kind):
        return next(a for a in get_args(kind) if a is not type(None)), True
    return kind, False


def _scalar(kind: Any, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str):
            if value.strip().lower() in TRUE_WORDS:
                return True
            if value.strip().lower() in FALSE_WORDS:
                return False
            raise ValueError
        if not isinstance(value, (bool, int)):
            raise ValueError
        return bool(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(float(value)) if isinstance(value, str) else int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if kind is dict:
        if not isinstance(value, dict):
            raise ValueError
        return value
    if isinstance(value, (dict, list, tuple)):
        raise ValueError
    return str(value)


def coerce(cls: type, key: str, value: Any) -> Any:
    """``value`` (from YAML or the command line) as the type of ``cls``'s field ``key``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    if key not in fields:
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RaekitError(f"unknown config key {key!r}{hint}; known keys: {', '.join(fields)}")
    kind, optional = _strip_optional(get_type_hints(cls)[key])
    if optional and (value is None or (isinstance(value, str)
                                       and value.strip().lower() in NONE_WORDS)):
        return None
    try:
        if get_origin(kind) is tuple:  # tuple[int, ...]: a YAML list, or "2,3,4" / "[2, 3, 4]"
            item = get_args(kind)[0]
            if isinstance(value, str):
                text = value.strip()
                value = yaml.safe_load(text) if text.startswith("[") else text.split(",")
            if not isinstance(value, (list, tuple)):
                value = [value]
            return tuple(_scalar(item, v.strip() if isinstance(v, str) else v) for v in value)
        return _scalar(kind, value)
    except (TypeError, ValueError, yaml.YAMLError):
        name = getattr(kind, "__name__", str(kind)).replace("tuple", "list")
        raise RaekitError(f"{key} must be {name}, got {value!r}") from None


def layered(cls: type, layers: list[dict[str, Any]]) -> Any:
    """An instance of the dataclass ``cls`` from ``layers`` (later ones win), values coerced."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            values[key] = coerce(cls, key, value)
    return cls(**values)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["beta=1e-4", "width=4"]`` → ``{"beta": "1e-4", "width": "4"}`` (``-`` in keys → ``_``)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RaekitError(f"expected key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file holding a mapping of config keys."""
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


def dump_yaml(values: dict[str, Any]) -> str:
    """A config as YAML (tuples as lists), as ``config.yaml`` holds it."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return yaml.safe_dump(plain, sort_keys=False)


def _configs() -> Path:
    return Path(str(resources.files("raekit") / "configs"))


def preset_path(name: str) -> Path | None:
    """The shipped preset ``name`` (``mnist/rae-l2``, ``grammar/expressions/paper``), if any."""
    p = _configs() / f"{name}.yaml"
    return p if ".." not in Path(name).parts and p.is_file() else None


def list_presets(folder: str = "") -> list[str]:
    """The names of the shipped presets below ``folder`` (relative to it)."""
    root = _configs() / folder
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def resolve_config_file(name: str, *, folder: str = "") -> Path:
    """A YAML file's path, or the shipped preset ``folder/name``."""
    if Path(name).expanduser().is_file():
        return Path(name).expanduser()
    if not name.endswith((".yaml", ".yml")):
        p = preset_path(f"{folder}/{name}" if folder else name)
        if p is not None:
            return p
    known = list_presets(folder)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise RaekitError(f"config {name!r} is neither a file nor a shipped preset{hint}; "
                      f"presets: {', '.join(known)}")
