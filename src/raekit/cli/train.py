"""``raekit train``: train a model from a shipped preset, a YAML file and key=value overrides."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from ..data import DATASETS
from ..errors import RaekitError
from ..models import MODELS, NETWORKS
from ..settings import list_presets
from ..training.config import PRESETS, build_config, config_keys_help
from ..training.run import CONFIG_FILE, load_run

ALIASES = ("data_root", "accelerator", "devices", "strategy", "precision", "seed")


def add_parser(sub) -> None:
    from .options import add_config_arguments

    p = sub.add_parser(
        "train", help="train a model; writes a run directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(f"""\
            Train a model and write one run directory (default runs/<dataset>-<model>):
            config.yaml, checkpoints/{{best,last}}.ckpt, model.pt, logs/metrics.csv and
            reconstructions.png.

            Settings are layered: defaults < the shipped preset for the dataset and model
            (the paper's β, λ and learning rate) < CONFIG < key=value overrides.

            models:   {', '.join(MODELS)}
            datasets: {', '.join(DATASETS)}
            networks: {', '.join(NETWORKS)} (default: by image size), or your own:
                      network=package.module:function (see raekit.models.nets)

            examples:
              raekit train                                   # RAE-L2 on the bundled digits
              raekit train dataset=mnist model=rae-gp data_root=~/data
              raekit train mnist/rae-sn width=4 epochs=10    # a shipped preset, smaller
              raekit train my.yaml devices=2 strategy=ddp accelerator=cpu
              raekit train --resume runs/mnist-rae-gp        # continue an interrupted run
            """),
        epilog="config keys (defaults): " + config_keys_help())
    add_config_arguments(p, preset_help="a YAML file or a shipped preset such as mnist/rae-l2",
                         aliases=ALIASES)
    p.add_argument("--resume", metavar="RUN",
                   help="continue the run in this directory from its last checkpoint (overrides "
                        "may change e.g. epochs)")
    p.add_argument("--list-presets", action="store_true", help="list the shipped presets and exit")
    p.add_argument("--quiet", action="store_true",
                   help="print only warnings, errors and the final summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training import train
    from .options import config_arguments, no_progress_bars

    if args.list_presets:
        print("\n".join(list_presets(PRESETS)))
        return 0
    config, overrides = config_arguments(args)
    if no_progress_bars(args, overrides):
        overrides["progress"] = "false"  # a line per epoch, not a progress bar redrawn in a file
    if args.resume:
        if config:
            raise RaekitError("--resume takes its config from the run; "
                              "pass only key=value overrides")
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG_FILE).is_file():
            raise RaekitError(f"{run_dir} is not a raekit run directory (no {CONFIG_FILE})")
        overrides.update(out=str(run_dir.parent), name=run_dir.name)
        cfg = build_config(str(run_dir / CONFIG_FILE), overrides)
    else:
        cfg = build_config(config, overrides)
    run_dir = train(cfg, resume=bool(args.resume))
    print_summary(load_run(run_dir).summary())
    return 0


def print_summary(s: dict) -> None:
    """The end of a training run, for a person: how it went, what it wrote, what to do next."""
    run = s["run"]
    seconds = f" in {s['train_seconds']:.0f} s" if s.get("train_seconds") is not None else ""
    print(f"trained {s['model']} on {s['dataset']}{seconds}: best epoch {s['best_epoch']} "
          f"of {s['epochs']}")
    terms = "  ".join(f"{k} {v:.4g}" for k, v in s["val_at_best"].items())
    print(f"  held-out at the best epoch: {terms}")
    if "rec_held_out_over_train" in s:
        print(f"  reconstruction error at the end: held-out {s['val_last']['rec']:.4g}, "
              f"training {s['train_last']['rec']:.4g} (ratio {s['rec_held_out_over_train']:.2f})")
    bn = s["batch_norm"]
    print("  batch norm: " + (f"statistics recomputed over {bn['images']:,} training images "
                              f"({bn['seconds']:.1f} s in all)" if bn["precise"]
                              else bn["statistics"]))
    d = s["density"]
    print(f"  samples: {d['name']} fitted on {d['codes']:,} training codes in {d['seconds']:.1f} s")
    print(f"  files in {run}: " + ", ".join(s["files"]))
    print("next:")
    print(f"  raekit sample {run} -n 64               # more samples ({d['name']})")
    print(f"  raekit interpolate {run}                # linear, slerp and norm-rescaled strips")
    print(f"  raekit evaluate {run} --fid off         # domain FD, PRD, precision and recall")
