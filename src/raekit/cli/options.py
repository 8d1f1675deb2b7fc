"""Argument types and the config arguments that several commands share."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..settings import parse_overrides


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (both endpoints), got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def add_config_arguments(p: argparse.ArgumentParser, *, preset_help: str,
                         aliases: tuple[str, ...] = ()) -> None:
    """``[CONFIG] [key=value ...]`` and ``--KEY VALUE`` aliases for a few keys."""
    p.add_argument("config", nargs="?", metavar="CONFIG", help=preset_help)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    for key in aliases:
        p.add_argument(f"--{key.replace('_', '-')}", dest=f"opt_{key}", metavar="VALUE",
                       help=f"same as {key}=VALUE")


def config_arguments(args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """The CONFIG file or preset (None when only overrides were given) and the overrides."""
    items = list(getattr(args, "overrides", None) or [])
    config = getattr(args, "config", None)
    if config and "=" in config:  # no config file, only overrides
        items.insert(0, config)
        config = None
    overrides: dict[str, Any] = parse_overrides(items)
    overrides.update({k[4:]: v for k, v in vars(args).items()
                      if k.startswith("opt_") and v is not None})
    return config, overrides


def no_progress_bars(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> bool:
    """True with ``--quiet``, and when stderr is not a terminal (a log file gets a line per epoch,
    not a bar redrawn a thousand times) unless ``progress=`` was given explicitly."""
    explicit = overrides is not None and "progress" in overrides
    return bool(getattr(args, "quiet", False)) or (not sys.stderr.isatty() and not explicit)
