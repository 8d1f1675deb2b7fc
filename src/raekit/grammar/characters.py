"""The character vocabulary of the character-level baseline (CVAE; Gómez-Bombarelli et al.,
as compared in the Grammar VAE paper; reference code mkusner/grammarVAE, ``equation_vae.py``,
``molecule_vae.py``, ``make_zinc_dataset_str.py``).

A :class:`Characters` object has the same verbs as a :class:`~raekit.grammar.grammars.Grammar`
(``parse`` → symbol indices, ``to_onehot``, ``from_indices``, ``max_length``, ``num_rules``), so
data loading, models and metrics treat both alike.

The reference's alphabets (:data:`ALPHABETS`, the default) are fixed lists of single characters
— 15 for expressions, 35 for ZINC — with the space as the *last* symbol, the padding: ``Cl``,
``Br``, ``@@`` and ``sin(`` are spelt character by character, so a decoder can produce half of
one. A decoding is all its characters joined, then stripped of spaces at both ends (spaces
inside stay, as in the reference). ``charset="data"`` builds the former raekit vocabulary
instead: the characters of the training strings with ``Cl``, ``Br`` and ``@@`` kept whole.

A character-decoded expression is valid by the reference's rule
(:func:`character_expression_is_valid`): it tokenizes, the expression grammar parses it (without
the 15-production limit of the grammar models) and it evaluates at x = 0 without an error.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from ..errors import RaekitError

PAD = " "
MULTI = ("Cl", "Br", "@@")

#: the reference's character lists, in its order; the space (padding) is last
ALPHABETS = {
    "expressions": ["x", "+", "(", ")", "1", "2", "3", "*", "/", "s", "i", "n", "e", "p", " "],
    "zinc": ["C", "(", ")", "c", "1", "2", "o", "=", "O", "N", "3", "F", "[", "@", "H", "]", "n",
             "-", "#", "S", "l", "+", "s", "B", "r", "/", "4", "\\", "5", "6", "7", "I", "P", "8",
             " "],
}
#: the reference's maximum lengths of the character models (equation_vae.py, molecule_vae.py)
MAX_LENGTHS = {"expressions": 19, "zinc": 120}
CHARSETS = ("reference", "data")


class Characters:
    """A vocabulary of symbols (one of them the padding space) with a maximum length.

    Args:
        name: the data set (``"expressions"`` or ``"zinc"``).
        alphabet: every symbol, in index order, the padding space included (anywhere).
        max_length: strings longer than this (in symbols) cannot be encoded (the reference: 19
            for expressions, 120 for molecules).
    """

    def __init__(self, name: str, alphabet: list[str], max_length: int):
        if PAD not in alphabet or len(set(alphabet)) != len(alphabet):
            raise RaekitError("a character alphabet needs distinct symbols, one of them the "
                              "padding space")
        self.name = name
        self.symbols = list(alphabet)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.max_length = int(max_length)
        self.pad_rule = self.index[PAD]
        multi = sorted((s for s in self.symbols if len(s) > 1), key=len, reverse=True)
        self._re = re.compile("|".join([re.escape(m) for m in multi] + ["."]), re.S)

    @classmethod
    def reference(cls, name: str, max_length: int | None = None) -> Characters:
        """The reference's fixed alphabet of ``name`` (and its maximum length unless given)."""
        if name not in ALPHABETS:
            raise RaekitError(f"no character alphabet for {name!r}; choose from "
                              f"{sorted(ALPHABETS)}")
        return cls(name, ALPHABETS[name], max_length or MAX_LENGTHS[name])

    @classmethod
    def from_strings(cls, name: str, strings: list[str], max_length: int) -> Characters:
        """The vocabulary of ``strings`` (``Cl``, ``Br``, ``@@`` kept whole), padding first."""
        pattern = re.compile("|".join(re.escape(m) for m in MULTI) + "|.", re.S)
        symbols = {t for s in strings for t in pattern.findall(s.strip())}
        return cls(name, [PAD] + sorted(symbols - {PAD}), max_length)

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
        """Symbol sequences → (B, max_length) indices, padded with the space."""
        out = np.full((len(sequences), self.max_length), self.pad_rule, dtype=np.int64)
        for i, seq in enumerate(sequences):
            out[i, :len(seq)] = seq
        return torch.from_numpy(out)

    def to_onehot(self, sequences: list[list[int]]) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.to_indices(sequences), self.num_rules).float()

    def from_rules(self, indices) -> str | None:
        """All symbols joined, spaces stripped at both ends (the reference's decoding); None
        when nothing is left."""
        s = "".join(self.symbols[int(i)] for i in indices).strip()
        return s or None

    def from_indices(self, indices: torch.Tensor) -> list[str | None]:
        return [self.from_rules(row) for row in indices.tolist()]

    def is_valid(self, s: str | None) -> bool | None:
        """The reference's validity of a character-decoded expression; None for molecules
        (whose validity is RDKit's, :func:`raekit.grammar.scores.is_valid`)."""
        if self.name != "expressions":
            return None
        return character_expression_is_valid(s)

    def state(self) -> dict:
        """What rebuilds this vocabulary (stored in checkpoints)."""
        return {"name": self.name, "alphabet": self.symbols, "max_length": self.max_length}

    @classmethod
    def from_state(cls, state: dict) -> Characters:
        if "alphabet" in state:
            return cls(state["name"], list(state["alphabet"]), state["max_length"])
        # runs written before the fixed alphabets: padding first, then the symbols
        return cls(state["name"], [PAD] + list(state["symbols"]), state["max_length"])


def make_characters(name: str, charset: str = "reference", strings: list[str] | None = None,
                    max_length: int | None = None) -> Characters:
    """The character vocabulary of a run: the reference's alphabet, or that of ``strings``."""
    if charset == "reference":
        return Characters.reference(name, max_length)
    if charset == "data":
        if strings is None:
            raise RaekitError("charset='data' needs the training strings to build a vocabulary")
        return Characters.from_strings(name, strings, max_length or MAX_LENGTHS[name])
    raise RaekitError(f"charset must be one of {', '.join(CHARSETS)}, got {charset!r}")


def expression_tokens(s: str) -> list[str]:
    """The reference's expression tokenizer (``equation_vae.tokenize``): ``sin(`` and ``exp(``
    as one token, every other character but letters and spaces on its own, split on spaces."""
    for fn in ("sin", "exp"):
        s = s.replace(fn + "(", fn + " ")
    s = re.sub(r"([^a-z ])", r" \1 ", s)
    for fn in ("sin", "exp"):
        s = s.replace(fn, fn + "(")
    return s.split()


def character_expression_is_valid(s: str | None) -> bool:
    """The reference's rule for a character-decoded expression (``run_bo.py`` of the character
    model): stripped, it tokenizes, the expression grammar parses it (any length: the character
    model is not held to 15 productions) and it evaluates at x = 0 (a Python integer, so
    ``1/x`` raises and is invalid) without an error."""
    from .grammars import expression_grammar

    if s is None or not s.strip():
        return False
    s = s.strip()
    tokens = expression_tokens(s)
    if "".join(tokens) != "".join(s.split()):
        # the tokenizer turns a bare "exp"/"sin" into "exp(": "exp1)" parses as "exp(1)" but is
        # not that string (the reference's eval of it fails: invalid)
        return False
    try:
        expression_grammar().parse_nltk_tokens(tokens, s)
    except RaekitError:
        return False
    try:
        with np.errstate(all="ignore"):
            eval("".join(tokens), {"__builtins__": {}}, {"sin": np.sin, "exp": np.exp, "x": 0})  # noqa: S307 — grammar-checked
    except (ArithmeticError, ValueError, TypeError):
        return False
    return True
