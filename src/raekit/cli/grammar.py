"""``raekit grammar``: train grammar/character autoencoders, sample them, encode strings, and
run Bayesian optimisation in their latent space (Ghosh et al. 2020 §6.2)."""

from __future__ import annotations

import argparse
import json
import textwrap

from ..densities import DENSITIES
from ..errors import RaekitError
from ..grammar.config import DATASETS, PRESETS
from ..settings import list_presets
from .options import add_config_arguments, config_arguments, no_progress_bars, positive_int

# Kept here (not imported from raekit.grammar.models) so that `raekit --help` works without the
# optional packages; tests/test_grammar_cli.py checks that it matches MODELS.
MODEL_NAMES = ("cvae", "gcvvae", "grae", "gvae")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "grammar", help="grammar autoencoders (GRAE, GVAE, GCVVAE, CVAE) on expressions and "
                        "molecules, with Bayesian optimisation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Structured objects (Ghosh et al. 2020 §6.2, after the Grammar VAE).

            examples:
              raekit grammar train data_path=equations.txt               # GRAE, expressions/small
              raekit grammar train expressions/paper model=gvae data_path=equations.txt
              raekit grammar train zinc/paper model=gvae accelerator=gpu # GPU-sized
              raekit grammar sample runs/grammar-expressions-grae-small --density gmm -n 20
              raekit grammar encode runs/grammar-expressions-grae-small "sin(x)+x*2"
              raekit grammar bo runs/grammar-expressions-grae-small --seeds 1 2 3
            Data files default to $RAEKIT_DATA/expressions/equation2_15_dataset.txt and
            $RAEKIT_DATA/zinc/250k_rndm_zinc_drugs_clean.smi.gz."""))
    gsub = p.add_subparsers(dest="grammar_command", metavar="ACTION", required=True)

    t = gsub.add_parser(
        "train", help="train a model; writes a run directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(f"""\
            Train a grammar or character autoencoder and write a run directory (default
            runs/grammar-<data>-<model>-<scale>), as raekit train does for images.

            Settings are layered: defaults < the shipped preset of the data set and scale
            (grammar/<data>/<scale>.yaml: 'paper' is the Grammar VAE's settings, 'small' a
            CPU-sized run) < CONFIG < key=value overrides.

            models:  grae (deterministic, β·L_Z + L2 on the decoder), gvae, gcvvae (constant
                     σ), cvae (character-level VAE)
            data:    {', '.join(DATASETS)}
            presets: {', '.join(list_presets(PRESETS))}
            """),
        epilog="config keys: see raekit.grammar.config.GrammarConfig, e.g. model, data, scale, "
               "data_path, limit, epochs, batch_size, lr, beta, reg_weight, kl_weight, sigma, "
               "latent_dim, hidden, seed, holdout, val_split, val_size, out, name; the "
               "reference's objective and schedule by default, with options reconstruction, "
               "kl_reduction, log_var, epsilon_std, charset, plateau_* (README: Protocol)")
    add_config_arguments(t, preset_help="a YAML file or a shipped preset such as expressions/paper",
                         aliases=("data_path", "accelerator", "devices", "seed"))
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=run_train)

    s = gsub.add_parser("sample", help="decode codes drawn from the prior or an ex-post density")
    s.add_argument("run", help="a run directory written by 'raekit grammar train'")
    s.add_argument("--density", default="gmm", choices=sorted(DENSITIES),
                   help="the density the codes are drawn from (default gmm)")
    s.add_argument("-n", type=positive_int, default=20, help="number of codes")
    s.add_argument("--argmax", action="store_true", help="decode by argmax instead of sampling")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--output", help="also write the strings and the valid share as JSON")
    s.set_defaults(func=run_sample)

    e = gsub.add_parser("encode", help="print the codes of strings")
    e.add_argument("run")
    e.add_argument("strings", nargs="+")
    e.set_defaults(func=run_encode)

    b = gsub.add_parser(
        "bo", help="Bayesian optimisation of the score in the latent space",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Bayesian optimisation in a run's latent space, as the Grammar VAE's reference code:
            the codes of all strings of the data file, a random 90/10 split per seed, a
            sparse GP (500 inducing points, SEP, Adam) refitted each round, 50 points per round
            (EI against the minimum GP mean, then Kriging believer), 5 rounds; reported as its
            get_final_results.py (valid share, average score, best three distinct values).

            examples:
              raekit grammar bo RUN --seeds 1 2 3 4 5 6 7 8 9 10
              raekit grammar bo RUN acquisition=qlogei rounds=2 batch=10 pool=5000
            """),
        epilog="settings (key=value): see raekit.grammar.bo.BOConfig: acquisition "
               "(reference|qlogei), rounds, batch, seeds, decodes, features (all|training), "
               "pool, test_fraction, invalid_value, inducing, gp_epochs, gp_minibatch, gp_lr, "
               "grid, lbfgs_iterations, exact_limit, qlogei_epochs, num_restarts, raw_samples, "
               "device")
    b.add_argument("run")
    b.add_argument("overrides", nargs="*", metavar="key=value", help="BO settings")
    b.add_argument("--acquisition", choices=("reference", "qlogei"))
    b.add_argument("--rounds", type=positive_int)
    b.add_argument("--batch", type=positive_int, help="points per round (default 50)")
    b.add_argument("--decodes", type=positive_int,
                   help="decodings per point (default 25 expressions, 500 molecules)")
    b.add_argument("--seeds", type=int, nargs="+")
    b.add_argument("--n-train", "--pool", dest="pool", type=positive_int,
                   help="use N of the strings, drawn at random (default all)")
    b.add_argument("--inducing", type=positive_int, help="inducing points (default 500)")
    b.add_argument("--output", help="write the results as JSON (default RUN/bo.json)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=run_bo)


def _require() -> None:
    """A one-line error when the optional packages of ``raekit[molecules]`` are missing."""
    from importlib.util import find_spec

    missing = [m for m in ("nltk", "rdkit", "botorch", "gpytorch", "networkx")
               if find_spec(m) is None]
    if missing:
        raise RaekitError(f"raekit grammar needs {', '.join(missing)}: "
                          "pip install 'raekit[molecules]'")


def run_train(args) -> int:
    _require()
    from ..grammar.config import build_grammar_config
    from ..grammar.train import train

    config, overrides = config_arguments(args)
    if no_progress_bars(args, overrides):
        overrides["progress"] = False
    run_dir = train(build_grammar_config(config, overrides))
    print(f"run written to {run_dir}")
    print((run_dir / "metrics.json").read_text().strip())
    return 0


def run_sample(args) -> int:
    _require()
    import torch

    from ..densities import make_density
    from ..files import save_json
    from ..grammar.metrics import decode_strings
    from ..grammar.train import codec_valid_share, load_run

    run = load_run(args.run)
    _, codes = run.training_codes()
    density = make_density(args.density).fit(codes.numpy())
    z = density.sample(args.n, seed=args.seed)
    strings = decode_strings(run.model, run.codec, z, sample=not args.argmax,
                             generator=torch.Generator().manual_seed(args.seed))
    share = codec_valid_share(run.codec, strings, run.config.data)
    for s in strings:
        print(s if s is not None else "<invalid>")
    print(f"valid: {share:.3f} of {len(strings)}")
    if args.output:
        save_json({"density": args.density, "valid_share": share, "strings": strings},
                  args.output)
    return 0


def run_encode(args) -> int:
    _require()
    from ..grammar.metrics import encode_strings
    from ..grammar.train import load_run

    run = load_run(args.run)
    z = encode_strings(run.model, run.codec, ["".join(s.split()) for s in args.strings])
    for s, code in zip(args.strings, z.tolist()):
        print(s, " ".join(f"{v:.4f}" for v in code))
    return 0


def run_bo(args) -> int:
    _require()
    from pathlib import Path

    from ..files import save_json
    from ..grammar.bo import BOConfig, bo_strings, latent_bo
    from ..grammar.train import load_run
    from ..settings import layered, parse_overrides

    flags = {k: getattr(args, k) for k in ("acquisition", "rounds", "batch", "decodes", "seeds",
                                           "pool", "inducing") if getattr(args, k) is not None}
    cfg = layered(BOConfig, [flags, parse_overrides(args.overrides)]).validate()
    run = load_run(args.run)
    progress = not no_progress_bars(args)
    strings, codes = bo_strings(run, cfg.features, progress=progress)
    result = latent_bo(run.model, run.codec, run.config.data, strings, codes, cfg,
                       progress=progress)
    out = Path(args.output) if args.output else Path(args.run) / "bo.json"
    save_json(result, out)
    print(json.dumps({k: result[k] for k in ("valid_share", "mean_score", "best")}, indent=2))
    print(f"results written to {out}")
    return 0
