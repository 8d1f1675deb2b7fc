"""How Table 1's images are made: the reference code's protocol, or raekit's (issue 12).

The reference code (``interpolation_fid_and_viz.py`` of ParthaEth/Regularized_autoencoders-RAE-)
makes a few choices that move the FID; raekit offers each as a named option, and takes the
reference's by default where its numbers are compared with the published ones:

==============  =====================================  ========================================
choice          reference (``"reference"``)            raekit (``"raekit"``)
==============  =====================================  ========================================
reconstruction  ``sampled``: decode a draw of q(z|x)    ``mean``: decode the code (a VAE's μ)
                (``auto_encoder.predict``); a 2-stage
                VAE through both stages
                (``predict_2stage``)
rec_images      ``val``: reconstruct validation         ``paired``: reconstruct the reference
                images, score against the test           (test) images themselves
                statistics
quantisation    ``truncate``: (clip(x,0,1)·255)          ``round``: round(255·x)
                .astype(uint8)
gmm_density     ``published``: the estimator behind     ``gmm`` (max_iter 2000)
                the published number — ``dpgmm``
                (``GMM_Dirichlet``) or ``gmm``
pairs           ``reference``: 2n indices drawn          ``distinct``: n independent pairs of
                without replacement from the             two different validation codes
                validation indices repeated 3 times
==============  =====================================  ========================================

``protocol="auto"`` is the reference's on the paper's datasets (MNIST, CIFAR-10, CelebA) and
raekit's elsewhere. Each choice can be set on its own over the protocol.

The real (reference) images are exact 8-bit pictures; they are always turned back into uint8 by
rounding, which recovers them exactly. Only generated images are quantised by the choice above.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import RaekitError
from ..pictures import QUANTISATIONS

#: the datasets of the paper's Table 1: ``protocol="auto"`` takes the reference's there
PAPER_DATASETS = ("mnist", "cifar10", "celeba")
#: a ``gmm_density`` that means "the estimator the published number came from"
PUBLISHED = "published"


@dataclass(frozen=True)
class Protocol:
    reconstruction: str  # "sampled" or "mean"
    rec_images: str  # "val" or "paired"
    quantisation: str  # a key of raekit.pictures.QUANTISATIONS
    gmm_density: str  # "published" or a density name
    pairs: str  # a key of PAIRINGS


PROTOCOLS = {
    "reference": Protocol(reconstruction="sampled", rec_images="val", quantisation="truncate",
                          gmm_density=PUBLISHED, pairs="reference"),
    "raekit": Protocol(reconstruction="mean", rec_images="paired", quantisation="round",
                       gmm_density="gmm", pairs="distinct"),
}

#: the values each choice takes (``gmm_density`` also takes any density name)
CHOICES = {
    "reconstruction": ("sampled", "mean"),
    "rec_images": ("val", "paired"),
    "quantisation": tuple(QUANTISATIONS),
    "pairs": ("reference", "distinct"),
}


# ----------------------------------------------------------------------------- published estimators

#: The "GMM" column's estimator per (dataset, model), as the reference code's result notes
#: (``configurations/config.py``) name it: ``GMM_Dirichlet`` → dpgmm, ``GMM`` → gmm. Where the
#: notes say nothing the paper's description (a 10-component GMM) is assumed.
GMM_IN_NOTES = {
    **{("mnist", m): "dpgmm" for m in ("cv-vae", "wae", "rae-gp", "rae-l2", "rae-sn", "rae",
                                        "ae")},
    ("mnist", "vae"): "gmm",
    **{("cifar10", m): "gmm" for m in ("cv-vae", "wae", "rae-l2", "rae-sn", "rae", "ae")},
    **{("celeba", m): "dpgmm" for m in ("rae-gp", "rae-sn", "rae", "ae")},
}
#: The "N" column's density in the paper's table: the prior for VAE and WAE, the second stage
#: for the 2-stage VAE, one fitted Gaussian otherwise (the models' own, as raekit's default).
N_OF_PUBLISHED = {"vae": "prior", "wae": "prior", "2s-vae": "two-stage"}


def published_density(dataset: str, model: str, column: str) -> tuple[str, bool] | None:
    """The density behind a published N or GMM number and whether the reference's notes name
    it (False: the paper's description); None for other columns."""
    if column == "GMM":
        named = GMM_IN_NOTES.get((dataset, model))
        return (named, True) if named else ("gmm", False)
    if column == "N":
        return N_OF_PUBLISHED.get(model, "gaussian"), False
    return None


# ----------------------------------------------------------------------------- resolving

def protocol_name(requested: str, dataset: str) -> str:
    if requested == "auto":
        return "reference" if dataset in PAPER_DATASETS else "raekit"
    if requested not in PROTOCOLS:
        raise RaekitError(f"protocol must be auto, {' or '.join(PROTOCOLS)}, got {requested!r}")
    return requested


def resolve(requested: str, dataset: str, model: str, **overrides: str | None) -> dict[str, str]:
    """The concrete choices for a run: the protocol's, with ``overrides`` (None: keep) on top, and
    ``gmm_density`` "published" turned into a density name. Returns ``{"protocol": name,
    "reconstruction": …, "rec_images": …, "quantisation": …, "gmm_density": …, "pairs": …}``."""
    from ..densities import DENSITIES

    name = protocol_name(requested, dataset)
    choices = asdict(PROTOCOLS[name])
    for key, value in overrides.items():
        if key not in choices:
            raise RaekitError(f"unknown protocol choice {key!r}")
        if value is None:
            continue
        allowed = (*DENSITIES, PUBLISHED) if key == "gmm_density" else CHOICES[key]
        if value not in allowed:
            raise RaekitError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
        choices[key] = value
    if choices["gmm_density"] == PUBLISHED:
        choices["gmm_density"] = published_density(dataset, model, "GMM")[0]
    return {"protocol": name, **choices}


# ----------------------------------------------------------------------------- interpolation pairs

def reference_pairs(num_codes: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's pairs: ``np.random.choice(list(range(V)) * 3, (n, 2), replace=False)``
    under ``np.random.seed(seed)`` — each validation index at most 3 times over all pairs, and a
    pair may join an image with itself. More copies are used when 2n > 3V."""
    copies = max(3, math.ceil(2 * n / num_codes))
    idx = np.random.RandomState(seed).choice(list(range(num_codes)) * copies, (n, 2),
                                             replace=False)
    return torch.from_numpy(idx[:, 0]).long(), torch.from_numpy(idx[:, 1]).long()


def distinct_pairs(num_codes: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """raekit's pairs: n independent draws of two different indices."""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(num_codes, (n,), generator=g)
    j = (i + torch.randint(1, num_codes, (n,), generator=g)) % num_codes  # a different image
    return i, j


PAIRINGS = {"reference": reference_pairs, "distinct": distinct_pairs}
