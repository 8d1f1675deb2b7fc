"""``raekit fit-density``, ``sample``, ``reconstruct`` and ``interpolate``: the ex-post generation
of Ghosh et al. 2020 (§4, §6) for a finished run directory.

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
from pathlib import Path

import numpy as np
import torch

from ..densities import DENSITIES
from ..errors import RaekitError
from .options import at_least_two, positive_int


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run directory written by raekit train")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, … (default: a GPU if "
                                                     "there is one)")
    p.add_argument("--batch-size", type=positive_int, default=256,
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
    p.add_argument("-n", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the samples (default 0)")
    p.add_argument("--npz", metavar="FILE", help="also write the samples to FILE: 'images' "
                                                  "(n, C, H, W) float32 in [0, 1] and 'z' (n, d)")
    p.add_argument("--png-dir", metavar="DIR",
                   help="also write one 8-bit PNG per sample into DIR (sample-00000.png, …), for "
                        "other FID tools")
    p.add_argument("--per-row", type=positive_int, default=8, help="images per row (default 8)")
    p.add_argument("--out", metavar="PNG", help="picture path (default in the run directory)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --npz file or PNGs in --png-dir")
    p.set_defaults(func=sample_command)

    p = sub.add_parser(
        "reconstruct", help="held-out images next to their reconstructions (PNG)",
        description="Write RUN/reconstructions-<split>.png: rows of held-out images, each over "
                    "its reconstruction; print the mean squared error per pixel.")
    _common(p)
    p.add_argument("-n", type=positive_int, default=32, help="number of images (default 32)")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="held-out split (default val; test falls back to val where the dataset "
                        "has none)")
    p.add_argument("--per-row", type=positive_int, default=8, help="images per row (default 8)")
    p.add_argument("--out", metavar="PNG", help="picture path (default in the run directory)")
    p.set_defaults(func=reconstruct_command)

    p = sub.add_parser(
        "interpolate", help="decoded interpolations between pairs of held-out images (PNG)",
        description="Write RUN/interpolations-<split>.png: for each pair of held-out images, "
                    "three labelled strips (linear, slerp, norm-rescaled), each from the first "
                    "image to the second with the decoded interpolants between them.")
    _common(p)
    p.add_argument("--pairs", type=positive_int, default=4, help="number of pairs (default 4)")
    p.add_argument("--steps", type=at_least_two, default=8,
                   help="decoded codes per strip, endpoints included (default 8)")
    p.add_argument("--seed", type=int, default=0, help="which pairs (default 0)")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="held-out split (default val: the images kept in RUN/examples.pt, so no "
                        "data is needed; test reads the dataset)")
    p.add_argument("--out", metavar="PNG", help="picture path (default in the run directory)")
    p.set_defaults(func=interpolate_command)


# ----------------------------------------------------------------------------- helpers


def _open(args):
    """The run and its model (best weights, eval mode) on the chosen device."""
    from ..models import resolve_device
    from ..training import load_run

    run = load_run(args.run)
    return run, run.load_model(map_location=resolve_device(args.device))


def _refuse_existing(path: Path, force: bool, what: str = "refit and replace it") -> None:
    if path.exists() and not force:
        raise RaekitError(f"{path} already exists; pass --force to {what}")


def _density_name(args, model) -> str:
    from ..models.base import sampling_density

    return args.density or sampling_density(model)


def _fit(run, model, name: str, args):
    density, fit = run.fit_density(name, model, batch_size=args.batch_size,
                                   progress=run.config.progress)
    print(f"fitted {name} on {fit.n_codes} training codes ({fit.dim}-D) in {fit.seconds:.1f} s; "
          f"held-out log-likelihood {fit.val_loglik:.3f} per code; stored in {fit.path}")
    return density


# ----------------------------------------------------------------------------- commands


def fit_density_command(args) -> int:
    run, model = _open(args)
    name = _density_name(args, model)
    _refuse_existing(run.density_path(name), args.force)
    _fit(run, model, name, args)
    return 0


def sample_command(args) -> int:
    from ..files import atomic_path
    from ..pictures import image_rows, save_grid, save_pngs
    from ..sampling import decode

    if args.seed < 0:
        raise RaekitError(f"--seed must be ≥ 0, got {args.seed}")
    npz = Path(args.npz) if args.npz else None
    if npz is not None:
        if npz.suffix != ".npz":
            raise RaekitError(f"--npz must name a .npz file, got {npz}")
        _refuse_existing(npz, args.force, "replace it")
    png_dir = Path(args.png_dir) if args.png_dir else None
    if png_dir is not None:
        if png_dir.exists() and not png_dir.is_dir():
            raise RaekitError(f"--png-dir {png_dir} exists and is not a folder")
        if png_dir.is_dir() and any(png_dir.glob("sample-*.png")) and not args.force:
            raise RaekitError(f"{png_dir} already holds samples; pass --force to replace them")
    run, model = _open(args)
    name = _density_name(args, model)
    density = run.stored_density(name)
    if density is None:
        print(f"no stored {name} density in {run.density_path(name).parent}: fitting it first")
        density = _fit(run, model, name, args)
    z = density.sample(args.n, seed=args.seed)  # (n, d) float32
    images = decode(model, z, batch_size=args.batch_size)  # (n, C, H, W) in [0, 1]
    out = Path(args.out) if args.out else run.path / f"samples-{name}-seed{args.seed}.png"
    rows = image_rows(images, args.per_row)
    labels = [f"{name} {i * args.per_row + 1}-{i * args.per_row + len(r)}"
              for i, r in enumerate(rows)]
    save_grid(rows, out, labels=labels)
    print(f"{args.n} samples of the {name} density (seed {args.seed}) → {out}")
    if npz is not None:
        with atomic_path(npz) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the name
                np.savez(f, images=images.numpy().astype(np.float32), z=z.numpy(),
                         density=np.array(name), seed=np.array(args.seed))
        print(f"samples written to {npz} (images {tuple(images.shape)}, z {tuple(z.shape)})")
    if png_dir is not None:
        names = save_pngs(images, png_dir)
        print(f"{len(names)} PNGs written to {png_dir} ({names[0]} … {names[-1]})")
    return 0


def _held_out(run, split: str, n: int, seed: int | None = None, *,
              kept: bool = False) -> torch.Tensor:
    """``n`` held-out images: the first, or a random choice under ``seed``. With ``kept``, the
    validation images kept in the run directory serve when they are enough (no data read)."""
    from ..data import images_of

    examples = run.examples() if kept and split == "val" else None
    ds = examples if examples is not None and len(examples) >= n else getattr(run.splits, split)
    if seed is None:
        idx = range(min(n, len(ds)))
    else:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(ds), generator=g)[:n].tolist()
    return torch.stack([images_of(ds[i]) for i in idx])


def reconstruct_command(args) -> int:
    from ..pictures import image_rows, save_grid
    from ..sampling import reconstruct

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
    from ..pictures import save_grid
    from ..sampling import STRIP_METHODS, interpolation_strips

    if args.seed < 0:
        raise RaekitError(f"--seed must be ≥ 0, got {args.seed}")
    run, model = _open(args)
    x = _held_out(run, args.split, 2 * args.pairs, seed=args.seed, kept=True)  # (2P, C, H, W)
    if len(x) < 2:
        raise RaekitError(f"the {args.split} split has {len(x)} image(s); need at least 2")
    pairs = len(x) // 2
    rows, labels = interpolation_strips(model, x[:pairs], x[pairs:2 * pairs], args.steps,
                                        batch_size=args.batch_size)
    out = Path(args.out) if args.out else run.path / f"interpolations-{args.split}.png"
    save_grid(rows, out, labels=labels)
    print(f"{pairs} pairs of {args.split} images, {args.steps} decoded steps each "
          f"({', '.join(STRIP_METHODS)}; the originals at both ends) → {out}")
    return 0
