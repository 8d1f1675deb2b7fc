"""The ``raekit`` command. Each subcommand lives in a module of this package with
``add_parser(subparsers)``; errors a user can fix are printed as one line (exit status 2), never
as a traceback. Commands parse, print and exit; everything else is the library's."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from .. import __version__
from ..errors import Interrupted, RaekitError
from ..memory import keep_freed_memory

COMMAND_MODULES = (
    "raekit.cli.train",
    "raekit.cli.generate",
    "raekit.cli.evaluate",
    "raekit.cli.grammar",
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"raekit: warning: {message}", file=file or sys.stderr)


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record arrives (pytest and notebooks swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides after an option (`--data-root X epochs=3`) are not left to argparse,
    # which stops collecting positional arguments at the first option
    if extra and isinstance(getattr(args, "overrides", None), list) \
            and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    keep_freed_memory()  # large tensors reused, not faulted in again each step (see raekit.memory)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    log = logging.getLogger("raekit")  # the library reports through it; the command shows it
    handler, level = _StderrHandler(), log.level
    log.addHandler(handler)
    log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except Interrupted as e:
        print(f"raekit: interrupted: {e}", file=sys.stderr)
        return 130
    except RaekitError as e:
        print(f"raekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raekit: interrupted", file=sys.stderr)
        return 130
    finally:  # main() may be called in-process (tests, notebooks): leave no global state behind
        log.removeHandler(handler)
        log.setLevel(level)
        warnings.showwarning = shown
