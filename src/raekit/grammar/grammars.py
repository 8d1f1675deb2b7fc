"""Context-free grammars of structured objects (Kusner et al. 2017; Ghosh et al. 2020 §6.2).

A :class:`Grammar` wraps an NLTK ``CFG`` and everything the models need from it:

* ``tokenize(s)`` — the terminal symbols of a string (multi-character terminals such as ``Cl``,
  ``Br``, ``@@`` and ``sin(`` are single symbols, longest match first);
* ``parse(s)`` — the production sequence of the (leftmost) derivation, as indices into
  ``productions``; ``to_onehot`` pads it with the ``Nothing -> None`` rule to ``max_length``;
* ``from_rules(rules)`` — the string a production sequence derives (the inverse of ``parse``);
* the tensors of masked decoding: ``masks`` (N, R) — which rules each non-terminal may expand
  with — ``lhs`` (R,), and the right-hand non-terminals ``rhs`` (R, K) of every rule.

The SMILES grammar is the Grammar VAE's (76 rules, 23 non-terminals). Its two rules that use the
undefined non-terminal ``class`` can never finish a derivation; their masks are zero, as in the
Grammar VAE's code. The backslash bond is the one character ``\\`` (the Grammar VAE's
grammar string made it two). NLTK's chart parser is exact but takes ~10 ms a molecule, too slow for
ZINC-250k, so SMILES are parsed by :class:`SmilesParser`, a linear-time recursive-descent parser
for this one grammar whose output the tests check against NLTK's parse trees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import nltk
import numpy as np
import torch

from ..errors import RaekitError

EXPRESSION_RULES = """S -> S '+' T
S -> S '*' T
S -> S '/' T
S -> T
T -> '(' S ')'
T -> 'sin(' S ')'
T -> 'exp(' S ')'
T -> 'x'
T -> '1'
T -> '2'
T -> '3'
Nothing -> None"""

SMILES_RULES = r"""smiles -> chain
atom -> bracket_atom
atom -> aliphatic_organic
atom -> aromatic_organic
aliphatic_organic -> 'B'
aliphatic_organic -> 'C'
aliphatic_organic -> 'N'
aliphatic_organic -> 'O'
aliphatic_organic -> 'S'
aliphatic_organic -> 'P'
aliphatic_organic -> 'F'
aliphatic_organic -> 'I'
aliphatic_organic -> 'Cl'
aliphatic_organic -> 'Br'
aromatic_organic -> 'c'
aromatic_organic -> 'n'
aromatic_organic -> 'o'
aromatic_organic -> 's'
bracket_atom -> '[' BAI ']'
BAI -> isotope symbol BAC
BAI -> symbol BAC
BAI -> isotope symbol
BAI -> symbol
BAC -> chiral BAH
BAC -> BAH
BAC -> chiral
BAH -> hcount BACH
BAH -> BACH
BAH -> hcount
BACH -> charge class
BACH -> charge
BACH -> class
symbol -> aliphatic_organic
symbol -> aromatic_organic
isotope -> DIGIT
isotope -> DIGIT DIGIT
isotope -> DIGIT DIGIT DIGIT
DIGIT -> '1'
DIGIT -> '2'
DIGIT -> '3'
DIGIT -> '4'
DIGIT -> '5'
DIGIT -> '6'
DIGIT -> '7'
DIGIT -> '8'
chiral -> '@'
chiral -> '@@'
hcount -> 'H'
hcount -> 'H' DIGIT
charge -> '-'
charge -> '-' DIGIT
charge -> '-' DIGIT DIGIT
charge -> '+'
charge -> '+' DIGIT
charge -> '+' DIGIT DIGIT
bond -> '-'
bond -> '='
bond -> '#'
bond -> '/'
bond -> '\'
ringbond -> DIGIT
ringbond -> bond DIGIT
branched_atom -> atom
branched_atom -> atom RB
branched_atom -> atom BB
branched_atom -> atom RB BB
RB -> RB ringbond
RB -> ringbond
BB -> BB branch
BB -> branch
branch -> '(' chain ')'
branch -> '(' bond chain ')'
chain -> branched_atom
chain -> chain branched_atom
chain -> chain bond branched_atom
Nothing -> None"""

PAD_LHS = "Nothing"


@dataclass(eq=False)
class Grammar:
    """A CFG with the index tables of one-hot encoding and masked decoding.

    Args:
        name: ``"expressions"`` or ``"zinc"``.
        rules: the grammar in NLTK's ``CFG.fromstring`` notation; the first rule's left side is
            the start symbol, the last rule is the padding rule ``Nothing -> None``.
        max_length: production sequences are padded (or refused) at this length.
    """

    name: str
    rules: str
    max_length: int
    cfg: nltk.CFG = field(init=False, repr=False)

    def __post_init__(self):
        self.cfg = nltk.CFG.fromstring(self.rules)
        prods = self.cfg.productions()
        if str(prods[-1].lhs()) != PAD_LHS:
            raise RaekitError(f"the last rule of a grammar must be the padding rule "
                              f"{PAD_LHS} -> None")
        self.productions = list(prods)
        self.rule_index = {p: i for i, p in enumerate(prods)}
        # Non-terminals in order of first appearance as a left side (the Grammar VAE's order).
        self.nonterminals: list[str] = []
        for p in prods:
            if str(p.lhs()) not in self.nonterminals:
                self.nonterminals.append(str(p.lhs()))
        nt_index = {s: i for i, s in enumerate(self.nonterminals)}
        R, N = len(prods), len(self.nonterminals)
        self.pad_rule = R - 1
        self.start = nt_index[str(prods[0].lhs())]
        self.pad_nt = nt_index[PAD_LHS]
        lhs = [nt_index[str(p.lhs())] for p in prods]
        # A rule that uses a non-terminal without rules (the SMILES grammar's ``class``) can never
        # finish a derivation: it is masked out.
        usable = [all(isinstance(s, str) or str(s) in nt_index for s in p.rhs()) for p in prods]
        usable[self.pad_rule] = True  # ``Nothing -> None``: derives nothing
        rhs = [[nt_index[str(s)] for s in p.rhs() if not isinstance(s, str) and str(s) in nt_index]
               for p in prods]
        K = max(1, max(len(r) for r in rhs))
        masks = torch.zeros(N, R, dtype=torch.bool)
        for r, (nt, ok) in enumerate(zip(lhs, usable)):
            masks[nt, r] = ok
        self.masks = masks  # (N, R) rules allowed for each non-terminal on top of the stack
        self.lhs = torch.tensor(lhs)  # (R,)
        self.rhs = torch.full((R, K), -1, dtype=torch.long)  # (R, K) right-side non-terminals
        for r, nts in enumerate(rhs):
            self.rhs[r, :len(nts)] = torch.tensor(nts, dtype=torch.long)
        self.rhs_len = torch.tensor([len(nts) for nts in rhs])  # (R,)
        # Tokens: the terminals, longest first, so ``Cl`` wins over ``C`` and ``@@`` over ``@``.
        terminals = sorted({s for p in prods for s in p.rhs() if isinstance(s, str)},
                           key=lambda s: (-len(s), s))
        self.terminals = terminals
        self._token_re = re.compile("|".join(re.escape(t) for t in terminals))
        # Right sides for string decoding, reversed (pushed on a stack): terminals as str,
        # non-terminals as their index.
        self._lhs_list = lhs
        self._rhs_symbols = [[s if isinstance(s, str) else nt_index.get(str(s), -1)
                              for s in reversed(p.rhs())] for p in prods[:-1]] + [[]]
        self._nltk_parser = nltk.ChartParser(self.cfg)

    # ------------------------------------------------------------------ sizes
    @property
    def num_rules(self) -> int:
        return len(self.productions)

    @property
    def num_nonterminals(self) -> int:
        return len(self.nonterminals)

    # ------------------------------------------------------------- tokenising
    def tokenize(self, s: str) -> list[str]:
        """The terminal symbols of ``s`` (whitespace between symbols is ignored: the expression
        file writes ``x + sin( x )``); a :class:`RaekitError` names the first unknown character."""
        tokens, pos, n = [], 0, len(s)
        match = self._token_re.match
        while pos < n:
            if s[pos].isspace():
                pos += 1
                continue
            m = match(s, pos)
            if m is None:
                raise RaekitError(f"cannot tokenize {s.strip()!r} with the {self.name} grammar: "
                                  f"unknown symbol {s[pos:pos + 5]!r} at position {pos}")
            tokens.append(m.group())
            pos = m.end()
        return tokens

    @staticmethod
    def canonical(s: str) -> str:
        """The string without whitespace: what ``from_rules(parse(s))`` gives back."""
        return "".join(s.split())

    # ---------------------------------------------------------------- parsing
    def parse(self, s: str) -> list[int]:
        """Rule indices of the leftmost derivation of ``s`` (a :class:`RaekitError` if the grammar
        cannot derive it or the derivation is longer than ``max_length``)."""
        rules = self._parse_tokens(self.tokenize(s), s)
        if len(rules) > self.max_length:
            raise RaekitError(f"{s!r} needs {len(rules)} productions, more than the "
                              f"{self.name} grammar's limit of {self.max_length}")
        return rules

    def _parse_tokens(self, tokens: list[str], s: str) -> list[int]:
        return self.parse_nltk_tokens(tokens, s)

    def parse_nltk_tokens(self, tokens: list[str], s: str = "") -> list[int]:
        """NLTK's chart parser (exact, generic, slow): the reference parse."""
        if not tokens:
            raise RaekitError(f"cannot parse an empty string with the {self.name} grammar")
        try:
            tree = next(iter(self._nltk_parser.parse(tokens)), None)
        except ValueError as e:  # NLTK: a token the grammar does not cover
            raise RaekitError(f"the {self.name} grammar cannot parse {s!r}: {e}") from None
        if tree is None:
            raise RaekitError(f"the {self.name} grammar cannot derive {s!r}")
        return [self.rule_index[p] for p in tree.productions()]

    def try_parse(self, s: str) -> list[int] | None:
        """``parse(s)`` or None when it cannot be parsed."""
        try:
            return self.parse(s)
        except RaekitError:
            return None

    # ----------------------------------------------------------------- one-hot
    def to_onehot(self, sequences: list[list[int]]) -> torch.Tensor:
        """Production sequences → (B, max_length, R) one-hot, padded with the padding rule."""
        idx = self.to_indices(sequences)
        return torch.nn.functional.one_hot(idx, self.num_rules).float()

    def to_indices(self, sequences: list[list[int]]) -> torch.Tensor:
        """Production sequences → (B, max_length) rule indices, padded with the padding rule."""
        out = np.full((len(sequences), self.max_length), self.pad_rule, dtype=np.int64)
        for i, seq in enumerate(sequences):
            if len(seq) > self.max_length:
                raise RaekitError(f"a sequence of {len(seq)} productions exceeds max_length "
                                  f"{self.max_length}")
            out[i, :len(seq)] = seq
        return torch.from_numpy(out)

    def encode_strings(self, strings: list[str]) -> torch.Tensor:
        """Strings → (B, max_length, R) one-hot; a :class:`RaekitError` names the first bad one."""
        return self.to_onehot([self.parse(s) for s in strings])

    # ---------------------------------------------------------------- decoding
    def from_rules(self, rules) -> str | None:
        """The string derived by a production sequence (padding ignored), or None if the sequence
        is not a complete leftmost derivation from the start symbol."""
        stack: list = [self.start]  # ints are non-terminals, strs terminals; top at the end
        out: list[str] = []
        lhs, symbols = self._lhs_list, self._rhs_symbols
        for r in rules:
            r = int(r)
            if r == self.pad_rule:
                break
            while stack and isinstance(stack[-1], str):
                out.append(stack.pop())
            if not stack or lhs[r] != stack[-1]:
                return None
            stack.pop()
            stack.extend(symbols[r])
        while stack and isinstance(stack[-1], str):
            out.append(stack.pop())
        return "".join(out) if not stack else None

    def from_indices(self, indices: torch.Tensor) -> list[str | None]:
        """(B, T) rule indices → strings (None where the derivation is incomplete)."""
        return [self.from_rules(row) for row in indices.tolist()]

    def from_onehot(self, x: torch.Tensor) -> list[str | None]:
        """(B, T, R) one-hot (or scores) → strings, taking the argmax rule at every step."""
        return self.from_indices(x.argmax(dim=-1))


class SmilesParser:
    """An exact linear-time parser of the Grammar VAE's SMILES grammar.

    It reads the SMILES left to right (the grammar is LL with a bounded look-ahead once its three
    left-recursive lists — ``chain``, ``RB``, ``BB`` — are read as lists) and emits the rules in
    the order of NLTK's ``tree.productions()``: a pre-order walk of the parse tree, in which a
    left-recursive list of n items starts with its n−1 recursive rules.
    """

    ALIPHATIC = ("B", "C", "N", "O", "S", "P", "F", "I", "Cl", "Br")
    AROMATIC = ("c", "n", "o", "s")
    BONDS = ("-", "=", "#", "/", "\\")
    DIGITS = tuple("12345678")

    def __init__(self, grammar: Grammar):
        idx = {}
        for i, p in enumerate(grammar.productions):
            idx[(str(p.lhs()), tuple(str(s) if not isinstance(s, str) else f"'{s}'"
                                     for s in p.rhs()))] = i
        self._r = idx

    def rule(self, lhs: str, *rhs: str) -> int:
        return self._r[(lhs, rhs)]

    def parse(self, tokens: list[str]) -> list[int] | None:
        """Rule indices, or None when the tokens are not a SMILES of the grammar."""
        self.toks, self.pos, self.out = tokens, 0, []
        try:
            self.out.append(self.rule("smiles", "chain"))
            self.chain()
        except _NoParse:
            return None
        return self.out if self.pos == len(tokens) else None

    # helpers
    def peek(self, k: int = 0) -> str | None:
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else None

    def eat(self, tok: str) -> None:
        if self.peek() != tok:
            raise _NoParse
        self.pos += 1

    def terminal(self, lhs: str, choices: tuple[str, ...]) -> None:
        t = self.peek()
        if t not in choices:
            raise _NoParse
        self.out.append(self.rule(lhs, f"'{t}'"))
        self.pos += 1

    def digit(self) -> None:
        self.terminal("DIGIT", self.DIGITS)

    def bond(self) -> None:
        self.terminal("bond", self.BONDS)

    def starts_atom(self) -> bool:
        t = self.peek()
        return t == "[" or t in self.ALIPHATIC or t in self.AROMATIC

    # chain -> branched_atom | chain branched_atom | chain bond branched_atom
    def chain(self) -> None:
        # Read the list items first (each: an optional bond, then a branched atom), then emit
        # the left-recursive rules for the items after the first, outermost first.
        items: list[tuple[bool, list[int]]] = []
        while True:
            has_bond = False
            saved_out, self.out = self.out, []
            if items and self.peek() in self.BONDS:
                self.bond()
                has_bond = True
            elif items and not self.starts_atom():
                self.out = saved_out
                break
            self.branched_atom()
            items.append((has_bond, self.out))
            self.out = saved_out
        for has_bond, _ in reversed(items[1:]):
            self.out.append(self.rule("chain", "chain", "bond", "branched_atom") if has_bond
                            else self.rule("chain", "chain", "branched_atom"))
        self.out.append(self.rule("chain", "branched_atom"))
        for _, rules in items:
            self.out.extend(rules)

    def branched_atom(self) -> None:
        atom_out, self.out = self.out, []
        self.atom()
        atom_rules = self.out
        rb = self.list_of(self.starts_ringbond, self.ringbond, "RB", "ringbond")
        bb = self.list_of(lambda: self.peek() == "(", self.branch, "BB", "branch")
        self.out = atom_out
        rhs = ("atom",) + (("RB",) if rb else ()) + (("BB",) if bb else ())
        self.out.append(self.rule("branched_atom", *rhs))
        self.out.extend(atom_rules)
        self.out.extend(rb)
        self.out.extend(bb)

    def starts_ringbond(self) -> bool:
        t = self.peek()
        return t in self.DIGITS or (t in self.BONDS and self.peek(1) in self.DIGITS)

    def list_of(self, starts, item, lhs: str, item_nt: str) -> list[int]:
        """Rules of a left-recursive list ``X -> X item | item`` (empty list: no rules)."""
        saved, parts = self.out, []
        while starts():
            self.out = []
            item()
            parts.append(self.out)
        self.out = saved
        if not parts:
            return []
        rules = [self.rule(lhs, lhs, item_nt)] * (len(parts) - 1) + [self.rule(lhs, item_nt)]
        for p in parts:
            rules.extend(p)
        return rules

    def ringbond(self) -> None:
        if self.peek() in self.BONDS:
            self.out.append(self.rule("ringbond", "bond", "DIGIT"))
            self.bond()
        else:
            self.out.append(self.rule("ringbond", "DIGIT"))
        self.digit()

    def branch(self) -> None:
        self.eat("(")
        if self.peek() in self.BONDS:
            self.out.append(self.rule("branch", "'('", "bond", "chain", "')'"))
            self.bond()
        else:
            self.out.append(self.rule("branch", "'('", "chain", "')'"))
        self.chain()
        self.eat(")")

    def atom(self) -> None:
        t = self.peek()
        if t == "[":
            self.out += [self.rule("atom", "bracket_atom"),
                         self.rule("bracket_atom", "'['", "BAI", "']'")]
            self.pos += 1
            self.bracket_inside()
            self.eat("]")
        elif t in self.ALIPHATIC:
            self.out.append(self.rule("atom", "aliphatic_organic"))
            self.terminal("aliphatic_organic", self.ALIPHATIC)
        elif t in self.AROMATIC:
            self.out.append(self.rule("atom", "aromatic_organic"))
            self.terminal("aromatic_organic", self.AROMATIC)
        else:
            raise _NoParse

    def bracket_inside(self) -> None:
        # BAI -> [isotope] symbol [BAC]
        n_iso = 0
        while self.peek(n_iso) in self.DIGITS and n_iso < 3:
            n_iso += 1
        saved, self.out = self.out, []
        if n_iso:
            self.out.append(self.rule("isotope", *(["DIGIT"] * n_iso)))
            for _ in range(n_iso):
                self.digit()
        iso = self.out
        self.out = []
        t = self.peek()
        if t in self.ALIPHATIC:
            self.out.append(self.rule("symbol", "aliphatic_organic"))
            self.terminal("aliphatic_organic", self.ALIPHATIC)
        elif t in self.AROMATIC:
            self.out.append(self.rule("symbol", "aromatic_organic"))
            self.terminal("aromatic_organic", self.AROMATIC)
        else:
            raise _NoParse
        sym = self.out
        self.out = []
        has_bac = self.peek() in ("@", "@@", "H", "+", "-")
        if has_bac:
            self.bac()
        bac = self.out
        self.out = saved
        rhs = (("isotope",) if n_iso else ()) + ("symbol",) + (("BAC",) if has_bac else ())
        self.out.append(self.rule("BAI", *rhs))
        self.out += iso + sym + bac

    def bac(self) -> None:
        # BAC -> chiral BAH | BAH | chiral;  BAH -> hcount BACH | BACH | hcount;  BACH -> charge
        chiral = self.peek() in ("@", "@@")
        rest = self.peek(1 if chiral else 0) in ("H", "+", "-")
        if chiral and rest:
            self.out.append(self.rule("BAC", "chiral", "BAH"))
        elif chiral:
            self.out.append(self.rule("BAC", "chiral"))
        else:
            self.out.append(self.rule("BAC", "BAH"))
        if chiral:
            self.terminal("chiral", ("@", "@@"))
        if not rest:
            return
        hcount = self.peek() == "H"
        i = 1 + (self.peek(1) in self.DIGITS) if hcount else 0
        charge = self.peek(i) in ("+", "-")
        if hcount and charge:
            self.out.append(self.rule("BAH", "hcount", "BACH"))
        elif hcount:
            self.out.append(self.rule("BAH", "hcount"))
        else:
            self.out.append(self.rule("BAH", "BACH"))
        if hcount:
            if self.peek(1) in self.DIGITS:
                self.out.append(self.rule("hcount", "'H'", "DIGIT"))
                self.pos += 1
                self.digit()
            else:
                self.out.append(self.rule("hcount", "'H'"))
                self.pos += 1
        if charge:
            self.out.append(self.rule("BACH", "charge"))
            sign = self.peek()
            n = 0
            while self.peek(1 + n) in self.DIGITS and n < 2:
                n += 1
            self.out.append(self.rule("charge", f"'{sign}'", *(["DIGIT"] * n)))
            self.pos += 1
            for _ in range(n):
                self.digit()


class _NoParse(Exception):
    pass


class SmilesGrammar(Grammar):
    """The ZINC SMILES grammar, parsed by :class:`SmilesParser` (NLTK's as a fallback)."""

    @cached_property
    def _fast(self) -> SmilesParser:
        return SmilesParser(self)

    def _parse_tokens(self, tokens, s):
        if not tokens:
            raise RaekitError("cannot parse an empty SMILES")
        rules = self._fast.parse(tokens)
        if rules is None:
            raise RaekitError(f"the zinc grammar cannot derive the SMILES {s!r}")
        return rules


EXPRESSION_MAX_LENGTH = 15
SMILES_MAX_LENGTH = 277


def expression_grammar() -> Grammar:
    """The Grammar VAE's arithmetic-expression grammar (12 rules, sequences of ≤ 15 rules)."""
    return _cached("expressions")


def smiles_grammar() -> SmilesGrammar:
    """The Grammar VAE's ZINC SMILES grammar (76 rules, 23 non-terminals, ≤ 277 rules)."""
    return _cached("zinc")


_CACHE: dict[str, Grammar] = {}


def _cached(name: str) -> Grammar:
    if name not in _CACHE:
        _CACHE[name] = (Grammar("expressions", EXPRESSION_RULES, EXPRESSION_MAX_LENGTH)
                        if name == "expressions"
                        else SmilesGrammar("zinc", SMILES_RULES, SMILES_MAX_LENGTH))
    return _CACHE[name]


GRAMMARS = {"expressions": expression_grammar, "zinc": smiles_grammar}


def get_grammar(name: str) -> Grammar:
    if name not in GRAMMARS:
        raise RaekitError(f"unknown grammar {name!r}; choose from {sorted(GRAMMARS)}")
    return GRAMMARS[name]()
