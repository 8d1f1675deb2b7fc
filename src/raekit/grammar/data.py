"""Reading the expression and SMILES files, parsing them into index sequences, and splitting
(Kusner et al. 2017 §4: 100,000 expressions; ZINC-250k with its first 5,000 molecules held out).

Strings the grammar (or the character vocabulary) cannot encode are skipped and counted — a
training file with a few odd lines still trains — and :class:`Encoded` reports the count.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import RaekitError

DEFAULT_FILES = {
    "expressions": Path("expressions") / "equation2_15_dataset.txt",
    "zinc": Path("zinc") / "250k_rndm_zinc_drugs_clean.smi.gz",
}


def default_path(data: str) -> Path:
    """``$RAEKIT_DATA/<the data set's file>`` (``data/…`` when RAEKIT_DATA is not set)."""
    return Path(os.environ.get("RAEKIT_DATA", "data")).expanduser() / DEFAULT_FILES[data]


def read_strings(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """One string a line (plain or gzipped text), whitespace removed (the expression file
    writes ``x + sin( x )``; SMILES hold none), blank lines dropped."""
    path = Path(path)
    if not path.is_file():
        raise RaekitError(f"no such data file: {path} (pass --data-path, or set RAEKIT_DATA to "
                          "the folder holding expressions/ and zinc/)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            strings = []
            for line in f:
                s = "".join(line.split())
                if s:
                    strings.append(s)
                    if limit is not None and len(strings) >= limit:
                        break
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise RaekitError(f"cannot read {path}: {e}") from None
    if not strings:
        raise RaekitError(f"{path} holds no strings (empty file)")
    return strings


ORDERS = ("file", "shuffled")


def select_strings(path: str | os.PathLike, limit: int | None = None,
                   order: str = "file") -> list[str]:
    """The strings a run uses: the file's first ``limit`` (``order="file"``, the reference's —
    the expression file is enumerated, so its first 20,000 strings and its last tenth cover
    different expressions), or ``limit`` strings drawn from the whole file in a fixed random
    order (``order="shuffled"``: the same for every model and seed, so splits are shared)."""
    if order not in ORDERS:
        raise RaekitError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "file":
        return read_strings(path, limit)
    strings = read_strings(path)
    perm = torch.randperm(len(strings), generator=torch.Generator().manual_seed(0))
    return [strings[i] for i in perm[:limit].tolist()]


@dataclass
class Encoded:
    """Strings that the codec could encode, their index sequences (N, T), and the skipped count."""
    strings: list[str]
    indices: torch.Tensor
    skipped: int
    first_skipped: list[str]


def encode_all(codec, strings: list[str], *, progress: bool = True) -> Encoded:
    """Parse every string; skip (and count) the ones the codec cannot encode."""
    kept, seqs, skipped = [], [], []
    for s in tqdm(strings, desc=f"parsing {codec.name}", disable=not progress, unit="str",
                  mininterval=1.0):
        seq = codec.try_parse(s)
        if seq is None:
            skipped.append(s)
        else:
            kept.append(s)
            seqs.append(seq)
    if not seqs:
        raise RaekitError(f"none of the {len(strings)} strings can be encoded with the "
                          f"{codec.name} {'grammar' if hasattr(codec, 'cfg') else 'characters'} "
                          f"(first: {strings[0]!r})")
    return Encoded(kept, codec.to_indices(seqs), len(skipped), skipped[:5])


class OneHotSequences(Dataset):
    """Index sequences (N, T) served as one-hot (T, R) float tensors, made per item so that
    ZINC-250k (250k × 277 × 76 floats) never has to sit in memory at once."""

    def __init__(self, indices: torch.Tensor, num_symbols: int):
        self.indices, self.num_symbols = indices, num_symbols

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return torch.nn.functional.one_hot(self.indices[i], self.num_symbols).float()


@dataclass
class GrammarSplits:
    """Held-out test strings (the file's first ``holdout``), validation and training sets."""
    test: list[str]
    val: list[str]
    train: list[str]
    test_idx: torch.Tensor
    val_idx: torch.Tensor
    train_idx: torch.Tensor
    skipped: int


def validation_count(n: int, val_split: float) -> int:
    """How many of ``n`` strings Keras' ``validation_split`` holds out: the last
    ``n − int(n·(1 − val_split))``."""
    return n - int(n * (1.0 - val_split))


def split(enc: Encoded, *, holdout: int, val_size: int | None = None,
          val_split: float = 0.1) -> GrammarSplits:
    """The first ``holdout`` strings (test), then training strings, then the last ``val_size``
    strings — or, with ``val_size=None``, the last ``val_split`` of the strings after the test
    ones, unshuffled, as Keras' ``fit(validation_split=…)`` splits them (the reference: 0.1)."""
    n = len(enc.strings)
    if val_size is None:
        val_size = validation_count(max(n - holdout, 0), val_split)
    if holdout + val_size >= n or val_size < 1:
        raise RaekitError(f"{n} usable strings are too few for holdout={holdout} and "
                          f"val_size={val_size} (lower them or give more data)")
    a, b = holdout, n - val_size
    return GrammarSplits(enc.strings[:a], enc.strings[b:], enc.strings[a:b],
                         enc.indices[:a], enc.indices[b:], enc.indices[a:b], enc.skipped)
