"""``raekit train``: train a model from a shipped preset, a YAML file and key=value overrides."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from pathlib import Path

from .config import FIELDS, TrainConfig, build_config, list_presets, parse_overrides


def add_parser(sub) -> None:
    keys = ", ".join(f"{f.name}={f.default!r}" if not isinstance(f.default, dataclasses._MISSING_TYPE)
                     else f.name for f in FIELDS.values() if f.name != "extra")
    p = sub.add_parser(
        "train", help="train a model; writes a run directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Train a model and write one run directory (default runs/<dataset>-<model>):
            config.yaml, checkpoints/{best,last}.ckpt, model.pt, logs/metrics.csv and
            reconstructions.png.

            Settings are layered: defaults < the shipped preset for the dataset and model
            (the paper's β, λ and learning rate) < CONFIG < key=value overrides.

            examples:
              raekit train                                   # RAE-L2 on the bundled digits
              raekit train dataset=mnist model=rae-gp data_root=~/data
              raekit train mnist/rae-sn width=4 epochs=10    # a shipped preset, smaller
              raekit train my.yaml devices=2 strategy=ddp accelerator=cpu
              raekit train --resume runs/mnist-rae-gp        # continue an interrupted run
            """),
        epilog="config keys (defaults): " + keys)
    p.add_argument("config", nargs="?", help="a YAML file or a shipped preset such as mnist/rae-l2")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this directory from its "
                                                   "last checkpoint (overrides may change e.g. epochs)")
    p.add_argument("--list-presets", action="store_true", help="list the shipped presets and exit")
    for flag in ("data-root", "accelerator", "devices", "strategy", "precision", "seed"):
        p.add_argument(f"--{flag}", dest=f"opt_{flag.replace('-', '_')}", metavar="VALUE",
                       help=f"same as {flag.replace('-', '_')}=VALUE")
    p.set_defaults(func=run)


def run(args) -> int:
    from .errors import RaekitError
    from .training import train

    if args.list_presets:
        print("\n".join(list_presets()))
        return 0
    items = list(args.overrides)
    config = args.config
    if config and "=" in config:  # no config file, only overrides
        items.insert(0, config)
        config = None
    overrides = parse_overrides(items)
    overrides.update({k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None})
    if args.resume:
        if config:
            raise RaekitError("--resume takes its config from the run; pass only key=value overrides")
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise RaekitError(f"{run_dir} is not a raekit run directory (no config.yaml)")
        overrides.update(out=str(run_dir.parent), name=run_dir.name)
        cfg = build_config(str(run_dir / "config.yaml"), overrides)
    else:
        cfg = build_config(config, overrides)
    run_dir = train(cfg, resume=bool(args.resume))
    print(f"run written to {run_dir}")
    return 0


__all__ = ["add_parser", "TrainConfig"]
