"""Metrics of grammar models (Kusner et al. 2017 §4): the share of valid
decodings of prior or ex-post samples, and reconstruction accuracy (encode held-out strings,
decode each several times, count exact matches)."""

from __future__ import annotations

from collections import Counter

import torch

from ..models.base import evaluating, model_device
from .models import decode_strings
from .scores import is_valid


def encode_strings(model, codec, strings: list[str], batch_size: int = 500) -> torch.Tensor:
    """Codes (N, d) of strings (the posterior mean for VAEs); a RaekitError for a string the
    codec cannot encode."""
    return torch.cat([encode_onehot(model, codec.to_onehot([codec.parse(s) for s in
                                                           strings[i:i + batch_size]]))
                      for i in range(0, len(strings), batch_size)])


def exact_reconstruction(model, codec, x: torch.Tensor,
                         strings: list[str]) -> float:
    """Share of ``strings`` (one-hot ``x``, (N, T, R)) that the argmax decoding of their code
    reproduces exactly (as strings: two derivations of one string both count)."""
    decoded = decode_strings(model, codec, encode_onehot(model, x))
    return sum(a == b for a, b in zip(decoded, strings)) / max(1, len(strings))


def encode_onehot(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    with evaluating(model):
        return torch.cat([model.encode(x[i:i + batch_size].to(model_device(model))).cpu()
                          for i in range(0, len(x), batch_size)])


def reconstruction_accuracy(model, codec, strings: list[str], *, decodes: int = 10,
                            sample: bool = True, seed: int = 0) -> float:
    """Share of (string, decoding) pairs whose decoding equals the string exactly (sampled
    decodings as in the Grammar VAE paper; ``sample=False``: the argmax, once)."""
    decodes = decodes if sample else 1
    z = encode_strings(model, codec, strings)  # (N, d)
    g = torch.Generator().manual_seed(seed)
    decoded = decode_strings(model, codec, z.repeat_interleave(decodes, 0), sample=sample,
                             generator=g)
    targets = [s for s in strings for _ in range(decodes)]
    return sum(a == b for a, b in zip(decoded, targets)) / len(targets)


def valid(s: str | None, data: str, codec=None) -> bool:
    """Whether a decoded string is valid: by the codec's own rule where it has one (the
    character model's expressions, :meth:`Characters.is_valid`), else the data set's
    (a grammar-derived expression, an RDKit molecule: :func:`raekit.grammar.scores.is_valid`)."""
    own = getattr(codec, "is_valid", None)
    verdict = own(s) if own is not None else None
    return bool(verdict) if verdict is not None else is_valid(s, data)


def valid_share(strings: list[str | None], data: str, codec=None) -> float:
    """Share of decoded strings that are :func:`valid`."""
    return sum(valid(s, data, codec) for s in strings) / max(1, len(strings))


def most_frequent_valid(candidates: list[str | None], data: str, codec=None) -> str | None:
    """The most frequent valid string among decodings of one code (None if none is valid)."""
    counts = Counter(s for s in candidates if s is not None)
    for s, _ in counts.most_common():
        if valid(s, data, codec):
            return s
    return None


def decode_majority(model, codec, z: torch.Tensor, data: str, *, decodes: int = 25,
                    seed: int = 0) -> list[str | None]:
    """For each code, decode ``decodes`` times (sampled) and keep the most frequent valid
    output (the Grammar VAE's protocol for BO: 25 times for expressions, 500 for molecules)."""
    g = torch.Generator().manual_seed(seed)
    flat = decode_strings(model, codec, z.repeat_interleave(decodes, 0), sample=True, generator=g)
    return [most_frequent_valid(flat[i * decodes:(i + 1) * decodes], data, codec)
            for i in range(len(z))]
