"""The ``raekit`` command. Each subcommand lives in a module with ``add_parser(subparsers)``;
errors a user can fix are printed as one line (exit status 2), never as a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import RaekitError
from .memory import keep_freed_memory

COMMAND_MODULES = (
    "raekit.train_cli",
    "raekit.generate_cli",
    "raekit.evaluate_cli",
    "raekit.grammar.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raekit",
        description="Regularized autoencoders as generative models (Ghosh et al., ICLR 2020): "
                    "train RAEs and their baselines, fit ex-post densities, sample and evaluate.",
        epilog="Run 'raekit COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"raekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # large tensors reused, not faulted in again each step (see raekit.memory)
    try:
        return int(args.func(args) or 0)
    except RaekitError as e:
        print(f"raekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raekit: interrupted", file=sys.stderr)
        return 130
