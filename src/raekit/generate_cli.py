"""``raekit fit-density``, ``sample``, ``reconstruct`` and ``interpolate``: the ex-post generation
of Ghosh et al. 2020 (§4, §6; paper-facts §2) for a finished run directory.

Files a run gains::

    RUN/densities/<density>.pt             a fitted density (fit-density; sample fits it if missing)
    RUN/samples-<density>-seed<S>.png      sample: decoded samples, rows labelled
    RUN/reconstructions-<split>.png        reconstruct: held-out images over their reconstructions
    RUN/interpolations-<split>.png         interpolate: linear, slerp and norm-rescaled strips

Densities are fitted on the codes of the *training* split. Data files are never replaced
silently: an existing density or ``--npz`` file is kept unless ``--force`` is given; pictures,
which the same command always redraws the same way, are replaced. Bad input (no such run, a
missing model.pt, a density from another version or another model, n ≤ 0) is refused with a
one-line error before anything is written.
"""

from __future__ import annotations

import argparse
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from .density import DENSITIES, Density, load_density, save_density
from .errors import RaekitError

DENSITY_DIR = "densities"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _at_least_two(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (both endpoints), got {value}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run directory written by raekit train")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, … (default: a GPU if "
                                                     "there is one)")
    p.add_argument("--batch-size", type=_positive_int, default=256,
                   help="images per batch when encoding and decoding (default 256)")


def _density_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--density", choices=sorted(DENSITIES), default=None,
                   help="the ex-post density (default: the model's own — the prior for a VAE, "
                        "two-stage for a 2-stage VAE — else gmm)")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fit-density", help="fit an ex-post density to a run's training codes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Encode the run's training images, fit a density to the codes and store it as
            RUN/densities/<density>.pt; print its mean log-likelihood on the held-out codes.

              gaussian   one full-covariance Gaussian (the paper's "N" for RAEs)
              gmm        10-component Gaussian mixture (the paper's "GMM")
              dpgmm      Dirichlet-process Gaussian mixture
              prior      N(0, I) (the paper's "N" for VAE and WAE)
              kde        kernel density, bandwidth chosen on held-out codes
              two-stage  a second VAE on the codes (config: stage2_hidden, stage2_kl_weight, …)

            examples:
              raekit fit-density runs/mnist-rae-l2 --density gmm
              raekit fit-density runs/mnist-rae-l2 --density kde --force   # refit, replace
            """))
    _common(p)
    _density_arg(p)
    p.add_argument("--force", action="store_true", help="replace a stored density of that name")
    p.set_defaults(func=fit_density_command)

    p = sub.add_parser(
        "sample", help="decode samples of a run's ex-post density into a PNG grid",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Draw n codes from the run's stored density, decode them and write a labelled grid
            RUN/samples-<density>-seed<seed>.png. A density that is not stored yet is fitted on
            the training codes first and stored (as fit-density would).

            examples:
              raekit sample runs/mnist-rae-l2 -n 64 --density gmm
              raekit sample runs/mnist-rae-l2 -n 10000 --npz samples.npz --seed 1
            """))
    _common(p)
    _density_arg(p)
    p.add_argument("-n", type=_positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the samples (default 0)")
    p.add_argument("--npz", metavar="FILE", help="also write the samples to FILE: 'images' "
                                                  "(n, C, H, W) float32 in [0, 1] and 'z' (n, d)")
    p.add_argument("--per-row", type=_positive_int, default=8, help="images per row (default 8)")
    p.add_argument("--out", metavar="PNG", help="picture path (default in the run directory)")
    p.add_argument("--force", action="store_true", help="replace an existing --npz file")
    p.set_defaults(func=sample_command)

    p = sub.add_parser(
        "reconstruct", help="held-out images next to their reconstructions (PNG)",
        description="Write RUN/reconstructions-<split>.png: rows of held-out images, each over "
                    "its reconstruction; print the mean squared error per pixel.")
    _common(p)
    p.add_argument("-n", type=_positive_int, default=32, help="number of images (default 32)")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="held-out split (default val; test falls back to val where the dataset "
                        "has none)")
    p.add_argument("--per-row", type=_positive_int, default=8, help="images per row (default 8)")
    p.add_argument("--out", metavar="PNG", help="picture path (default in the run directory)")
    p.set_defaults(func=reconstruct_command)

    p = sub.add_parser(
        "interpolate", help="decoded interpolations between pairs of held-out images (PNG)",
        description="Write RUN/interpolations-<split>.png: for each pair of held-out images, "
                    "three labelled strips (linear, slerp, norm-rescaled), each from the first "
                    "image to the second with the decoded interpolants between them.")
    _common(p)
    p.add_argument("--pairs", type=_positive_int, default=4, help="number of pairs (default 4)")
    p.add_argument("--steps", type=_at_least_two, default=8,
                   help="decoded codes per strip, endpoints included (default 8)")
    p.add_argument("--seed", type=int, default=0, help="which pairs (default 0)")
    p.add_argument("--split", choices=("val", "test"), default="val", help="held-out split")
    p.add_argument("--out", metavar="PNG", help="picture path (default in the run directory)")
    p.set_defaults(func=interpolate_command)


# ----------------------------------------------------------------------------- helpers


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RaekitError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RaekitError("--device cuda was asked for but no GPU is available")
    return device


def _open(args):
    """The run and its model (best weights, eval mode) on the chosen device."""
    from .runs import load_run

    run = load_run(args.run)
    return run, run.load_model(map_location=_device(args.device))


def model_digest(run) -> str:
    """Identifies the weights a density was fitted for (a retrained run has other codes)."""
    from .fid import file_digest
    from .runs import MODEL_FILE

    return file_digest(run.path / MODEL_FILE)


def _refuse_existing(path: Path, force: bool, what: str = "refit and replace it") -> None:
    if path.exists() and not force:
        raise RaekitError(f"{path} already exists; pass --force to {what}")


def _density_name(args, model) -> str:
    return args.density or getattr(model, "default_density", None) or "gmm"


def _codes(run, model, split: str, args) -> torch.Tensor:
    from .data import loader
    from .generate import encode_dataset

    ds = getattr(run.splits, split)
    return encode_dataset(model, loader(ds, run.config, batch_size=args.batch_size),
                          progress=run.config.progress)


def _latent_dim(run) -> int:
    from .zoo import latent_dim

    return latent_dim(run.config, run.splits.shape)


def fit_run_density(run, model, name: str, digest: str, args) -> Density:
    """Fit ``name`` on the run's training codes, store it, print what it scored held out."""
    density = DENSITIES[name].from_config(run.config)
    t = time.perf_counter()
    z = _codes(run, model, "train", args)
    density.fit(z)
    seconds = time.perf_counter() - t
    val = float(density.score(_codes(run, model, "val", args)))
    path = run.path / DENSITY_DIR / f"{name}.pt"
    save_density(density, path, model_digest=digest, split="train", n_codes=len(z),
                 dim=int(z.shape[1]), val_loglik=val, fit_seconds=round(seconds, 3))
    print(f"fitted {name} on {len(z)} training codes ({z.shape[1]}-D) in {seconds:.1f} s; "
          f"held-out log-likelihood {val:.3f} per code; stored in {path}")
    return density


def stored_density(run, name: str, digest: str) -> Density | None:
    """The run's stored density ``name``, None if there is none; refused if it does not fit."""
    path = run.path / DENSITY_DIR / f"{name}.pt"
    if not path.exists():
        return None
    density, meta = load_density(path, return_meta=True)
    hint = f"refit it with: raekit fit-density {run.path} --density {name} --force"
    if density.n_features_in_ != _latent_dim(run):
        raise RaekitError(f"{path} was fitted on {density.n_features_in_}-D codes but the model's "
                          f"codes are {_latent_dim(run)}-D; {hint}")
    if meta.get("model_digest") not in (None, digest):
        raise RaekitError(f"{path} was fitted on the codes of another model.pt (was the run "
                          f"retrained?); {hint}")
    return density


# ----------------------------------------------------------------------------- commands


def fit_density_command(args) -> int:
    run, model = _open(args)
    name = _density_name(args, model)
    _refuse_existing(run.path / DENSITY_DIR / f"{name}.pt", args.force)
    fit_run_density(run, model, name, model_digest(run), args)
    return 0


def sample_command(args) -> int:
    from .generate import decode
    from .io import atomic_path
    from .pictures import image_rows, save_grid

    if args.seed < 0:
        raise RaekitError(f"--seed must be ≥ 0, got {args.seed}")
    npz = Path(args.npz) if args.npz else None
    if npz is not None:
        if npz.suffix != ".npz":
            raise RaekitError(f"--npz must name a .npz file, got {npz}")
        _refuse_existing(npz, args.force, "replace it")
    run, model = _open(args)
    name = _density_name(args, model)
    digest = model_digest(run)
    density = stored_density(run, name, digest)
    if density is None:
        print(f"no stored {name} density in {run.path / DENSITY_DIR}: fitting it first")
        density = fit_run_density(run, model, name, digest, args)
    z = density.sample(args.n, seed=args.seed)  # (n, d) float32
    images = decode(model, z, batch_size=args.batch_size)  # (n, C, H, W) in [0, 1]
    out = Path(args.out) if args.out else run.path / f"samples-{name}-seed{args.seed}.png"
    rows = image_rows(images, args.per_row)
    labels = [f"{name} {i * args.per_row + 1}-{i * args.per_row + len(r)}" for i, r in enumerate(rows)]
    save_grid(rows, out, labels=labels)
    print(f"{args.n} samples of the {name} density (seed {args.seed}) → {out}")
    if npz is not None:
        with atomic_path(npz) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the name
                np.savez(f, images=images.numpy().astype(np.float32), z=z.numpy(),
                         density=np.array(name), seed=np.array(args.seed))
        print(f"samples written to {npz} (images {tuple(images.shape)}, z {tuple(z.shape)})")
    return 0


def _held_out(run, split: str, n: int, seed: int | None = None) -> torch.Tensor:
    from .data import images_of

    ds = getattr(run.splits, split)
    if seed is None:
        idx = range(min(n, len(ds)))
    else:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(ds), generator=g)[:n].tolist()
    return torch.stack([images_of(ds[i]) for i in idx])


def reconstruct_command(args) -> int:
    from .generate import reconstruct
    from .pictures import image_rows, save_grid

    run, model = _open(args)
    x = _held_out(run, args.split, args.n)  # (n, C, H, W)
    x_hat = reconstruct(model, x, batch_size=args.batch_size)
    rows, labels = [], []
    for orig, rec in zip(image_rows(x, args.per_row), image_rows(x_hat, args.per_row)):
        rows += [orig, rec]
        labels += ["held-out", "reconstruction"]
    out = Path(args.out) if args.out else run.path / f"reconstructions-{args.split}.png"
    save_grid(rows, out, labels=labels)
    mse = float((x_hat - x).pow(2).mean())
    print(f"{len(x)} {args.split} images and their reconstructions (mean squared error "
          f"{mse:.5f} per pixel) → {out}")
    return 0


def interpolate_command(args) -> int:
    from .generate import decode, evaluating, model_device
    from .interpolate import INTERPOLATIONS
    from .pictures import save_grid

    if args.seed < 0:
        raise RaekitError(f"--seed must be ≥ 0, got {args.seed}")
    run, model = _open(args)
    x = _held_out(run, args.split, 2 * args.pairs, seed=args.seed)  # (2P, C, H, W)
    if len(x) < 2:
        raise RaekitError(f"the {args.split} split has {len(x)} image(s); need at least 2")
    pairs = len(x) // 2
    with evaluating(model):
        z = model.encode(x[:2 * pairs].to(model_device(model))).cpu()  # (2P, d)
    z0, z1 = z[:pairs], z[pairs:2 * pairs]
    t = torch.linspace(0, 1, args.steps)
    rows, labels = [], []
    for method, fn in INTERPOLATIONS.items():
        path = fn(z0, z1, t)  # (steps, P, d)
        decoded = decode(model, path.transpose(0, 1).reshape(-1, z.shape[1]),
                         batch_size=args.batch_size)  # (P·steps, C, H, W)
        for i, strip in enumerate(decoded.view(pairs, args.steps, *decoded.shape[1:])):
            rows.append((i, method, torch.cat([x[i:i + 1], strip, x[pairs + i:pairs + i + 1]])))
    rows.sort(key=lambda r: r[0])  # group the three strips of each pair
    out = Path(args.out) if args.out else run.path / f"interpolations-{args.split}.png"
    save_grid([r[2] for r in rows], out, labels=[f"pair {i + 1} {m}" for i, m, _ in rows])
    print(f"{pairs} pairs of {args.split} images, {args.steps} decoded steps each "
          f"({', '.join(INTERPOLATIONS)}; the originals at both ends) → {out}")
    return 0
