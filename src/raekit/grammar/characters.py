"""The character vocabulary of the character-level baseline (CVAE; Gómez-Bombarelli et al.,
as compared in the Grammar VAE paper).

A :class:`Characters` object has the same verbs as a :class:`~raekit.grammar.grammars.Grammar`
(``parse`` → symbol indices, ``to_onehot``, ``from_indices``, ``max_length``, ``num_rules``), so
data loading, models and metrics treat both alike. Symbols are single characters, except that the
tokens ``Cl``, ``Br`` and ``@@`` are not split (so decoding cannot produce half of them); index 0
is the padding symbol.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from ..errors import RaekitError

PAD = " "
MULTI = ("Cl", "Br", "@@")


class Characters:
    """A vocabulary of characters (plus ``Cl``, ``Br``, ``@@``) with a maximum length.

    Args:
        name: the data set (``"expressions"`` or ``"zinc"``).
        symbols: the vocabulary without the padding symbol.
        max_length: strings longer than this (in symbols) cannot be encoded (the paper: 120 for
            molecules).
    """

    def __init__(self, name: str, symbols: list[str], max_length: int):
        self.name = name
        self.symbols = [PAD] + sorted(set(symbols) - {PAD})
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.max_length = int(max_length)
        self.pad_rule = 0
        multi = [m for m in MULTI if m in self.index]
        self._re = re.compile("|".join([re.escape(m) for m in multi] + ["."]), re.S)

    @classmethod
    def from_strings(cls, name: str, strings: list[str], max_length: int) -> Characters:
        """The vocabulary of ``strings`` (each tokenised with ``Cl``, ``Br``, ``@@`` kept whole)."""
        pattern = re.compile("|".join(re.escape(m) for m in MULTI) + "|.", re.S)
        symbols = {t for s in strings for t in pattern.findall(s.strip())}
        return cls(name, sorted(symbols), max_length)

    @property
    def num_rules(self) -> int:
        return len(self.symbols)

    def tokenize(self, s: str) -> list[str]:
        return self._re.findall(s.strip())

    def parse(self, s: str) -> list[int]:
        tokens = self.tokenize(s)
        if not tokens:
            raise RaekitError("cannot encode an empty string")
        unknown = [t for t in tokens if t not in self.index or t == PAD]
        if unknown:
            raise RaekitError(f"{s!r} holds symbols outside the {self.name} character set: "
                              f"{''.join(sorted(set(unknown)))!r}")
        if len(tokens) > self.max_length:
            raise RaekitError(f"{s!r} has {len(tokens)} symbols, more than the limit of "
                              f"{self.max_length}")
        return [self.index[t] for t in tokens]

    def try_parse(self, s: str) -> list[int] | None:
        try:
            return self.parse(s)
        except RaekitError:
            return None

    def to_indices(self, sequences: list[list[int]]) -> torch.Tensor:
        out = np.zeros((len(sequences), self.max_length), dtype=np.int64)
        for i, seq in enumerate(sequences):
            out[i, :len(seq)] = seq
        return torch.from_numpy(out)

    def to_onehot(self, sequences: list[list[int]]) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.to_indices(sequences), self.num_rules).float()

    def from_rules(self, indices) -> str | None:
        """Symbols up to the first padding symbol; None when a symbol follows padding or the
        string is empty (the model did not stop cleanly)."""
        idx = [int(i) for i in indices]
        n = idx.index(0) if 0 in idx else len(idx)
        if n == 0 or any(i != 0 for i in idx[n:]):
            return None
        return "".join(self.symbols[i] for i in idx[:n])

    def from_indices(self, indices: torch.Tensor) -> list[str | None]:
        return [self.from_rules(row) for row in indices.tolist()]

    def state(self) -> dict:
        """What rebuilds this vocabulary (stored in checkpoints)."""
        return {"name": self.name, "symbols": self.symbols[1:], "max_length": self.max_length}
