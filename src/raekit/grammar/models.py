"""Grammar and character autoencoders (Kusner et al. 2017; Ghosh et al. 2020 §6.2;
reference code mkusner/grammarVAE): the 1-D convolutional encoder, the 3-layer GRU decoder, the
masked cross-entropy and batched masked decoding through a stack of non-terminals.

Four flavours, one dict (:data:`MODELS`), all built from the same encoder and decoder:

* ``grae`` — :class:`raekit.models.Autoencoder` with β·L_Z and an L2 penalty on the decoder;
* ``gvae`` — :class:`raekit.vae.VAE` (learned σ, log σ = 5·tanh);
* ``gcvvae`` — :class:`raekit.vae.VAE` with a constant σ;
* ``cvae`` — the character-level VAE baseline (same nets over characters, no masks).

Shapes: x is the one-hot sequence (B, T, R) — T = max length, R = rules (or characters);
the decoder returns logits (B, T, R); codes z are (B, d).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RaekitError
from ..models.autoencoder import Autoencoder
from ..models.base import evaluating
from ..models.regularizers import L2Penalty
from ..models.vae import VAE
from .grammars import Grammar


class GrammarEncoder(nn.Module):
    """Three 1-D convolutions over time (ReLU, optional batch norm), flatten, dense (ReLU), then a
    linear map to ``out_dim`` (d for a deterministic or constant-variance encoder, 2·d for a VAE).
    (B, T, R) → (B, out_dim)."""

    def __init__(self, num_symbols: int, length: int, out_dim: int, *,
                 filters=(2, 3, 4), kernels=(2, 3, 4), dense: int = 100, batch_norm: bool = True):
        super().__init__()
        layers, c, t = [], num_symbols, length
        for f, k in zip(filters, kernels):
            layers += [nn.Conv1d(c, f, k), nn.ReLU()]
            if batch_norm:
                layers.append(nn.BatchNorm1d(f))
            c, t = f, t - k + 1
        if t < 1:
            raise RaekitError(f"sequences of length {length} are too short for kernels {kernels}")
        self.convs = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c * t, dense), nn.ReLU())
        self.out = nn.Linear(dense, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x.transpose(1, 2))  # (B, R, T) → (B, C, T')
        return self.out(self.dense(h))


class GrammarDecoder(nn.Module):
    """z → (optional batch norm) → dense (ReLU) → repeated over T steps → 3 GRU layers → dense
    over the rules. Not autoregressive: the logits of all steps come from z alone, so masked
    decoding can run after the network. (B, d) → logits (B, T, R)."""

    def __init__(self, latent_dim: int, length: int, num_symbols: int, *, hidden: int = 100,
                 layers: int = 3, batch_norm: bool = True):
        super().__init__()
        self.length = length
        self.norm = nn.BatchNorm1d(latent_dim) if batch_norm else nn.Identity()
        self.inp = nn.Linear(latent_dim, latent_dim)
        self.gru = nn.GRU(latent_dim, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, num_symbols)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(self.norm(z)))  # (B, d)
        h = h.unsqueeze(1).expand(-1, self.length, -1).contiguous()  # (B, T, d)
        h, _ = self.gru(h)  # (B, T, H)
        return self.out(h)  # (B, T, R)


class MaskedCrossEntropy(nn.Module):
    """Cross-entropy of the true rules under the softmax restricted, at each step, to the rules of
    the true step's left-hand non-terminal (the Grammar VAE's "conditional" loss), summed over
    time, averaged over the batch. The padding steps cost nothing (one allowed rule).
    ``grammar=None`` gives the plain (unmasked) cross-entropy of the character model."""

    def __init__(self, grammar: Grammar | None = None):
        super().__init__()
        self.masked = grammar is not None
        if self.masked:
            # allowed[r] = the rules with the same left side as rule r: (R, R)
            self.register_buffer("allowed", grammar.masks[grammar.lhs], persistent=False)

    def forward(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        target = x.argmax(dim=-1)  # (B, T)
        if self.masked:
            logits = logits.masked_fill(~self.allowed[target], float("-inf"))
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        return ce.view(target.shape).sum(dim=1).mean()


@contextmanager
def one_thread():
    """Run small tensor ops on one CPU thread: for them intra-op threads only add
    synchronisation, and stall badly when the machine's cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class StackDecoder:
    """Batched masked decoding: a stack of non-terminals per sequence, kept as one tensor.

    At step t every sequence looks at the non-terminal on top of its stack, keeps only that
    non-terminal's rules (the others' logits → −∞), picks a rule (argmax, or a sample via the
    Gumbel-max trick), pops the top and pushes the rule's right-side non-terminals in reverse.
    An empty stack allows only the padding rule. All of this is tensor indexing over the batch —
    the only Python loop is over the T steps. A sequence whose stack is not empty after T steps
    hit the length limit: it is reported incomplete (invalid).
    """

    def __init__(self, grammar: Grammar):
        self.g = grammar
        K = grammar.rhs.shape[1]
        n = grammar.rhs_len
        # Right-side non-terminals in push order: the first right-side symbol ends on top.
        j = torch.arange(K)
        src = (n[:, None] - 1 - j).clamp(min=0)
        self.push = torch.where(j < n[:, None], grammar.rhs.gather(1, src), -1)  # (R, K)
        self.stack_size = 1 + grammar.max_length * max(K - 1, 1) + K

    @torch.no_grad()
    def __call__(self, logits: torch.Tensor, *, sample: bool = False,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """logits (B, T, R) → rules (B, T) and complete (B,) booleans."""
        with one_thread():  # T steps of small ops
            return self._decode(logits, sample, generator)

    def _decode(self, logits, sample, generator):
        g, dev = self.g, logits.device
        B, T, R = logits.shape
        masks, rhs_len, push = g.masks.to(dev), g.rhs_len.to(dev), self.push.to(dev)
        K = push.shape[1]
        stack = torch.full((B, self.stack_size), g.pad_nt, dtype=torch.long, device=dev)
        stack[:, 0] = g.start
        sp = torch.ones(B, dtype=torch.long, device=dev)  # stack pointer = number of items
        rows = torch.arange(B, device=dev)
        offsets = torch.arange(K, device=dev)
        rules = torch.empty(B, T, dtype=torch.long, device=dev)
        if sample:
            u = torch.rand(B, T, R, generator=generator, device=dev if generator is None else
                           generator.device).to(dev)
            logits = logits - torch.log(-torch.log(u.clamp_min(1e-20)))  # + Gumbel noise
        for t in range(T):
            empty = sp == 0
            top = stack[rows, (sp - 1).clamp(min=0)]
            top = torch.where(empty, g.pad_nt, top)  # (B,)
            scores = logits[:, t].masked_fill(~masks[top], float("-inf"))
            rule = scores.argmax(dim=1)  # (B,)
            rules[:, t] = rule
            # pop the top, push the rule's non-terminals at sp-1, sp, …
            pos = (sp - 1).clamp(min=0)[:, None] + offsets  # (B, K)
            new = push[rule]  # (B, K)
            keep = stack.gather(1, pos)
            stack.scatter_(1, pos, torch.where(new >= 0, new, keep))
            sp = torch.where(empty, sp, sp - 1 + rhs_len[rule])
        return rules, sp == 0


class CharacterDecoding:
    """Unmasked decoding of the character model: the argmax (or a sample) at every step."""

    def __call__(self, logits: torch.Tensor, *, sample: bool = False,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if sample:
            u = torch.rand(logits.shape, generator=generator).to(logits.device)
            logits = logits - torch.log(-torch.log(u.clamp_min(1e-20)))
        rules = logits.argmax(dim=-1)
        return rules, torch.ones(len(rules), dtype=torch.bool, device=rules.device)


def decode_strings(model: nn.Module, codec, z: torch.Tensor, *, sample: bool = False,
                   generator: torch.Generator | None = None,
                   batch_size: int = 1000) -> list[str | None]:
    """Decode codes z (N, d) into strings (None: invalid or incomplete derivation)."""
    decoding = StackDecoder(codec) if isinstance(codec, Grammar) else CharacterDecoding()
    out: list[str | None] = []
    with evaluating(model):
        for i in range(0, len(z), batch_size):
            logits = model.decode(z[i:i + batch_size])
            rules, complete = decoding(logits, sample=sample, generator=generator)
            strings = codec.from_indices(rules.cpu())
            out += [s if ok else None for s, ok in zip(strings, complete.tolist())]
    return out


@dataclass
class NetSizes:
    """Sizes of the encoder and decoder (the paper's for each data set in :data:`PAPER_SIZES`)."""
    latent_dim: int
    filters: tuple[int, ...]
    kernels: tuple[int, ...]
    dense: int
    hidden: int
    batch_norm: bool


PAPER_SIZES = {
    "expressions": NetSizes(25, (2, 3, 4), (2, 3, 4), 100, 100, True),
    "zinc": NetSizes(56, (9, 9, 10), (9, 9, 11), 435, 501, False),
}


def _nets(codec, sizes: NetSizes, enc_out: int):
    enc = GrammarEncoder(codec.num_rules, codec.max_length, enc_out, filters=sizes.filters,
                         kernels=sizes.kernels, dense=sizes.dense, batch_norm=sizes.batch_norm)
    dec = GrammarDecoder(sizes.latent_dim, codec.max_length, codec.num_rules, hidden=sizes.hidden,
                         batch_norm=sizes.batch_norm)
    return enc, dec


def build_grae(codec, sizes, *, beta=1e-2, reg_weight=1e-5, **_):
    enc, dec = _nets(codec, sizes, sizes.latent_dim)
    return Autoencoder(enc, dec, beta=beta, regularizer=L2Penalty(reg_weight),
                       reconstruction_loss=MaskedCrossEntropy(codec))


def build_gvae(codec, sizes, *, kl_weight=1.0, **_):
    enc, dec = _nets(codec, sizes, 2 * sizes.latent_dim)
    return VAE(enc, dec, kl_weight=kl_weight, reconstruction_loss=MaskedCrossEntropy(codec))


def build_gcvvae(codec, sizes, *, kl_weight=1.0, sigma=0.7, **_):
    enc, dec = _nets(codec, sizes, sizes.latent_dim)
    return VAE(enc, dec, kl_weight=kl_weight, sigma=sigma,
               reconstruction_loss=MaskedCrossEntropy(codec))


def build_cvae(codec, sizes, *, kl_weight=1.0, **_):
    enc, dec = _nets(codec, sizes, 2 * sizes.latent_dim)
    return VAE(enc, dec, kl_weight=kl_weight, reconstruction_loss=MaskedCrossEntropy(None))


@dataclass(frozen=True)
class GrammarModelEntry:
    build: Callable[..., nn.Module]
    weights: tuple[str, ...]  # the config's loss weights this model reads
    grammar: bool  # decodes through the grammar (False: characters)


MODELS = {
    "grae": GrammarModelEntry(build_grae, ("beta", "reg_weight"), True),
    "gvae": GrammarModelEntry(build_gvae, ("kl_weight",), True),
    "gcvvae": GrammarModelEntry(build_gcvvae, ("kl_weight",), True),
    "cvae": GrammarModelEntry(build_cvae, ("kl_weight",), False),
}


def build_model(name: str, codec, sizes: NetSizes, **hyper) -> nn.Module:
    if name not in MODELS:
        raise RaekitError(f"unknown grammar model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name].build(codec, sizes, **hyper)
