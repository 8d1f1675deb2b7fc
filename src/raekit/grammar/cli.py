"""``raekit grammar``: train grammar/character autoencoders, sample them, encode strings, and
run Bayesian optimisation in their latent space (paper-facts §4)."""

from __future__ import annotations

import argparse
import json
import textwrap

# Kept here (not imported from .models/.config) so that `raekit --help` works without the
# optional packages; tests/test_grammar_cli.py checks they match MODELS and SCALES.
DATASETS = ("expressions", "zinc")
MODEL_NAMES = ("cvae", "gcvvae", "grae", "gvae")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "grammar", help="grammar autoencoders (GRAE, GVAE, GCVVAE, CVAE) on expressions and "
                        "molecules, with Bayesian optimisation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Structured objects (Ghosh et al. 2020 §6.2, after the Grammar VAE).

            examples:
              raekit grammar train --data expressions --model grae --data-path equations.txt
              raekit grammar train --data zinc --model gvae --scale paper   # needs a GPU
              raekit grammar sample runs/grammar-expressions-grae-small --density gmm -n 20
              raekit grammar encode runs/grammar-expressions-grae-small "sin(x)+x*2"
              raekit grammar bo runs/grammar-expressions-grae-small --seeds 0 1 2
            Data files default to $RAEKIT_DATA/expressions/equation2_15_dataset.txt and
            $RAEKIT_DATA/zinc/250k_rndm_zinc_drugs_clean.smi.gz."""))
    gsub = p.add_subparsers(dest="grammar_command", metavar="ACTION", required=True)

    t = gsub.add_parser("train", help="train a model; writes a run directory")
    t.add_argument("--data", choices=DATASETS, default="expressions")
    t.add_argument("--model", choices=MODEL_NAMES, default="grae",
                   help="grae: deterministic + β·L_Z + L2 on the decoder; gvae; gcvvae "
                        "(constant σ); cvae (character-level VAE)")
    t.add_argument("--scale", choices=["small", "paper"], default="small",
                   help="paper: the Grammar VAE's settings; small: a CPU-sized run")
    t.add_argument("--data-path", help="the data file (one string a line, .gz allowed)")
    for name, kind in [("limit", int), ("epochs", int), ("batch-size", int), ("lr", float),
                       ("beta", float), ("reg-weight", float), ("kl-weight", float),
                       ("sigma", float), ("latent-dim", int), ("hidden", int), ("seed", int),
                       ("holdout", int), ("val-size", int)]:
        t.add_argument(f"--{name}", type=kind, help="override the scale's value")
    t.add_argument("--accelerator", default=None, help="cpu, gpu, auto (Lightning)")
    t.add_argument("--out", default="runs")
    t.add_argument("--name", help="run directory name (default grammar-<data>-<model>-<scale>)")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=run_train)

    s = gsub.add_parser("sample", help="decode codes drawn from the prior or an ex-post density")
    s.add_argument("run", help="a run directory written by 'raekit grammar train'")
    s.add_argument("--density", default="gmm",
                   help="a density of raekit.density (prior, gaussian, gmm, dpgmm, kde, …)")
    s.add_argument("-n", type=int, default=20, help="number of codes")
    s.add_argument("--argmax", action="store_true", help="decode by argmax instead of sampling")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--output", help="also write the strings and the valid share as JSON")
    s.set_defaults(func=run_sample)

    e = gsub.add_parser("encode", help="print the codes of strings")
    e.add_argument("run")
    e.add_argument("strings", nargs="+")
    e.set_defaults(func=run_encode)

    b = gsub.add_parser("bo", help="Bayesian optimisation of the score in the latent space")
    b.add_argument("run")
    b.add_argument("--rounds", type=int, default=5)
    b.add_argument("--batch", type=int, default=50, help="points per round")
    b.add_argument("--decodes", type=int, help="decodings per point (default 25 expressions, "
                                              "500 molecules)")
    b.add_argument("--seeds", type=int, nargs="+", default=[0])
    b.add_argument("--n-train", type=int, default=2000,
                   help="training codes the GP starts from (a sparse GP above 2000)")
    b.add_argument("--inducing", type=int, default=500)
    b.add_argument("--output", help="write the results as JSON (default RUN/bo.json)")
    b.set_defaults(func=run_bo)


def _require() -> None:
    """A one-line error when the optional packages of ``raekit[molecules]`` are missing."""
    from importlib.util import find_spec

    from ..errors import RaekitError

    missing = [m for m in ("nltk", "rdkit", "botorch", "gpytorch") if find_spec(m) is None]
    if missing:
        raise RaekitError(f"raekit grammar needs {', '.join(missing)}: "
                          "pip install 'raekit[molecules]'")


def _positive(name: str, value) -> None:
    from ..errors import RaekitError

    if value is not None and value < 1:
        raise RaekitError(f"{name} must be ≥ 1, got {value}")


def run_train(args) -> int:
    _require()
    from .config import make_config
    from .train import train

    cfg = make_config(args.data, args.model, args.scale, data_path=args.data_path,
                      limit=args.limit, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, beta=args.beta, reg_weight=args.reg_weight,
                      kl_weight=args.kl_weight, sigma=args.sigma, latent_dim=args.latent_dim,
                      hidden=args.hidden, seed=args.seed, holdout=args.holdout,
                      val_size=args.val_size, accelerator=args.accelerator, out=args.out,
                      name=args.name, progress=not args.no_progress)
    run_dir = train(cfg)
    print(f"run written to {run_dir}")
    print((run_dir / "metrics.json").read_text().strip())
    return 0


def run_sample(args) -> int:
    _require()
    import torch

    from ..density import make_density
    from ..io import save_json
    from .metrics import decode_strings, valid_share
    from .train import load_run

    _positive("-n", args.n)
    run = load_run(args.run)
    _, codes = run.training_codes()
    density = make_density(args.density).fit(codes.numpy())
    z = density.sample(args.n, seed=args.seed)
    strings = decode_strings(run.model, run.codec, z, sample=not args.argmax,
                             generator=torch.Generator().manual_seed(args.seed))
    share = valid_share(strings, run.config.data)
    for s in strings:
        print(s if s is not None else "<invalid>")
    print(f"valid: {share:.3f} of {len(strings)}")
    if args.output:
        save_json({"density": args.density, "valid_share": share, "strings": strings},
                  args.output)
    return 0


def run_encode(args) -> int:
    _require()
    from .metrics import encode_strings
    from .train import load_run

    run = load_run(args.run)
    z = encode_strings(run.model, run.codec, ["".join(s.split()) for s in args.strings])
    for s, code in zip(args.strings, z.tolist()):
        print(s, " ".join(f"{v:.4f}" for v in code))
    return 0


def run_bo(args) -> int:
    _require()
    from pathlib import Path

    from ..io import save_json
    from .bo import latent_bo
    from .train import load_run

    for name in ("rounds", "batch", "n_train", "inducing"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    _positive("--decodes", args.decodes)
    run = load_run(args.run)
    strings, codes = run.training_codes()
    result = latent_bo(run.model, run.codec, run.config.data, strings[:args.n_train],
                       codes[:args.n_train], seeds=args.seeds, rounds=args.rounds,
                       batch=args.batch, decodes=args.decodes, inducing=args.inducing)
    out = Path(args.output) if args.output else Path(args.run) / "bo.json"
    save_json(result, out)
    print(json.dumps({k: result[k] for k in ("valid_share", "mean_score", "best")}, indent=2))
    print(f"results written to {out}")
    return 0
