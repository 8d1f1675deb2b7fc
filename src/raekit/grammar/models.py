"""Grammar and character autoencoders (Kusner et al. 2017; Ghosh et al. 2020 §6.2;
reference code mkusner/grammarVAE): the 1-D convolutional encoder, the 3-layer GRU decoder, the
masked reconstruction losses and batched masked decoding through a stack of non-terminals.

Four flavours, one dict (:data:`MODELS`), all built from the same encoder and decoder:

* ``grae`` — :class:`raekit.models.Autoencoder` with β·L_Z and an L2 penalty on the decoder;
* ``gvae`` — :class:`GrammarVAE` (learned σ);
* ``gcvvae`` — :class:`GrammarVAE` with a constant σ;
* ``cvae`` — the character-level VAE baseline (same nets over characters, no masks).

The objective is the reference's by default (``models/model_eq.py``, ``model_zinc.py`` and their
``_str`` twins), each choice a named option of :class:`~raekit.grammar.config.GrammarConfig`:

* reconstruction ``reference_bce`` (:class:`ReferenceBCE`): ``max_length`` × Keras'
  ``binary_crossentropy`` of the one-hot x against the masked softmax, both flattened —
  or ``cross_entropy`` (:class:`MaskedCrossEntropy`), raekit's earlier loss, which GRAE keeps
  by default (its β and λ were chosen with it; ``GrammarModelEntry.reconstruction``);
* KL ``mean`` over the latent dimensions (Keras ``-0.5·K.mean(1 + log σ² − μ² − σ²)``) or
  ``sum`` (the KL divergence itself);
* log-variance ``linear`` (a dense layer's output is log σ²) or ``tanh`` (log σ = 5·tanh, the
  image VAEs');
* sampling noise ``z = μ + epsilon_std·σ·ε`` with ``epsilon_std = 0.01`` (1.0: a plain VAE).

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
from ..models.vae import VAE, kl_to_standard_normal
from .grammars import Grammar

#: Keras' batch norm (the reference's): running averages with momentum 0.99, epsilon 1e-3
KERAS_BN = dict(momentum=0.01, eps=1e-3)


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
                layers.append(nn.BatchNorm1d(f, **KERAS_BN))
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
        self.norm = nn.BatchNorm1d(latent_dim, **KERAS_BN) if batch_norm else nn.Identity()
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
    the true step's left-hand non-terminal, summed over time, averaged over the batch (raekit's
    ``reconstruction=cross_entropy``). The padding steps cost nothing (one allowed rule).
    ``grammar=None`` gives the plain (unmasked) cross-entropy of the character model."""

    def __init__(self, grammar: Grammar | None = None):
        super().__init__()
        self.masked = grammar is not None
        if self.masked:
            # allowed[r] = the rules with the same left side as rule r: (R, R)
            self.register_buffer("allowed", grammar.masks[grammar.lhs], persistent=False)

    def masked_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, R) with the rules outside the true step's non-terminal at −∞."""
        if not self.masked:
            return logits
        return logits.masked_fill(~self.allowed[target], float("-inf"))

    def forward(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        target = x.argmax(dim=-1)  # (B, T)
        logits = self.masked_logits(logits, target)
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        return ce.view(target.shape).sum(dim=1).mean()


#: Keras' clipping of probabilities in ``binary_crossentropy`` (``_EPSILON = 10e-8``)
KERAS_EPSILON = 1e-7


class ReferenceBCE(MaskedCrossEntropy):
    """The reference's reconstruction term (``reconstruction=reference_bce``)::

        P = exp(logits)·M / Σ_r exp(logits)·M      (M: the true step's rules; all for characters)
        L = T · mean_{b,t,r} BCE(x, clip(P, 1e-7, 1 − 1e-7))

    — ``max_length · binary_crossentropy(K.flatten(x), K.flatten(P))``: Keras averages the
    element-wise binary cross-entropy over the whole flattened batch, so per sequence it is the
    sum over steps and rules divided by R, and the rules that are *not* the target cost
    −log(1 − P) too. P is computed as a softmax over the masked logits: the same numbers without
    the reference's overflow of exp for logits above ~88.
    """

    def forward(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        target = x.argmax(dim=-1)  # (B, T)
        p = torch.softmax(self.masked_logits(logits, target), dim=-1)  # (B, T, R)
        p = p.clamp(KERAS_EPSILON, 1 - KERAS_EPSILON)
        bce = -(x * torch.log(p) + (1 - x) * torch.log1p(-p))  # (B, T, R)
        return x.shape[1] * bce.mean()


RECONSTRUCTIONS = {"reference_bce": ReferenceBCE, "cross_entropy": MaskedCrossEntropy}
KL_REDUCTIONS = ("mean", "sum")
LOG_VARS = ("linear", "tanh")


class GrammarVAE(VAE):
    """The Grammar VAE's variational autoencoder (GVAE, GCVVAE, CVAE), :class:`raekit.vae.VAE`
    with the reference's parametrisation as options::

        log σ² = dense(h)                         (log_var="linear"; "tanh": log σ = 5·tanh)
        z = μ + epsilon_std · σ · ε,  ε ~ N(0, I)
        L = L_REC + kl_weight · KL,
        KL = ½ mean_j (σ_j² + μ_j² − 1 − log σ_j²)   (kl_reduction="mean"; "sum": ½ Σ_j …)

    With a constant σ (GCVVAE) the encoder gives μ only and ``log_var`` does not apply.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, kl_weight: float = 1.0,
                 sigma: float | None = None, reconstruction_loss=None,
                 epsilon_std: float = 0.01, kl_reduction: str = "mean", log_var: str = "linear"):
        super().__init__(encoder, decoder, kl_weight=kl_weight, sigma=sigma,
                         reconstruction_loss=reconstruction_loss)
        if kl_reduction not in KL_REDUCTIONS:
            raise RaekitError(f"kl_reduction must be one of {', '.join(KL_REDUCTIONS)}, "
                              f"got {kl_reduction!r}")
        if log_var not in LOG_VARS:
            raise RaekitError(f"log_var must be one of {', '.join(LOG_VARS)}, got {log_var!r}")
        if not epsilon_std > 0:
            raise RaekitError(f"epsilon_std must be > 0, got {epsilon_std}")
        self.epsilon_std = float(epsilon_std)
        self.kl_reduction = kl_reduction
        self.log_var = log_var

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ (B, d) and log σ (B, d) of q(z|x)."""
        if self.sigma is not None or self.log_var == "tanh":
            return super().posterior(x)
        h = self.encoder(x)
        if h.ndim != 2 or h.shape[1] % 2:
            raise RaekitError(f"a VAE's encoder must output (batch, 2·latent_dim) numbers "
                              f"(μ and log σ²), got shape {tuple(h.shape)}")
        mu, log_var = h.chunk(2, dim=1)
        return mu, 0.5 * log_var

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, log_sigma = self.posterior(x)  # (B, d) each
        eps = torch.randn_like(mu)
        z = mu + self.epsilon_std * torch.exp(log_sigma) * eps  # (B, d)
        rec = self.reconstruction_loss(self.decode(z), x)
        kl = kl_to_standard_normal(mu, log_sigma)  # (B,)
        if self.kl_reduction == "mean":
            kl = kl / mu.shape[1]
        kl = kl.mean()
        return {"loss": rec + self.kl_weight * kl, "rec": rec, "kl": kl}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, epsilon_std={self.epsilon_std:g}, "
                f"kl_reduction={self.kl_reduction!r}, log_var={self.log_var!r}")


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


def _reconstruction(reconstruction: str, grammar: Grammar | None) -> nn.Module:
    if reconstruction not in RECONSTRUCTIONS:
        raise RaekitError(f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}, "
                          f"got {reconstruction!r}")
    return RECONSTRUCTIONS[reconstruction](grammar)


def build_grae(codec, sizes, *, beta=1e-2, reg_weight=1e-5, reconstruction="cross_entropy", **_):
    enc, dec = _nets(codec, sizes, sizes.latent_dim)
    return Autoencoder(enc, dec, beta=beta, regularizer=L2Penalty(reg_weight),
                       reconstruction_loss=_reconstruction(reconstruction, codec))


def _vae_options(hyper: dict) -> dict:
    return {k: hyper[k] for k in ("epsilon_std", "kl_reduction", "log_var") if k in hyper}


def build_gvae(codec, sizes, *, kl_weight=1.0, reconstruction="reference_bce", **hyper):
    enc, dec = _nets(codec, sizes, 2 * sizes.latent_dim)
    return GrammarVAE(enc, dec, kl_weight=kl_weight, **_vae_options(hyper),
                      reconstruction_loss=_reconstruction(reconstruction, codec))


def build_gcvvae(codec, sizes, *, kl_weight=1.0, sigma=0.7, reconstruction="reference_bce",
                 **hyper):
    enc, dec = _nets(codec, sizes, sizes.latent_dim)
    return GrammarVAE(enc, dec, kl_weight=kl_weight, sigma=sigma, **_vae_options(hyper),
                      reconstruction_loss=_reconstruction(reconstruction, codec))


def build_cvae(codec, sizes, *, kl_weight=1.0, reconstruction="reference_bce", **hyper):
    enc, dec = _nets(codec, sizes, 2 * sizes.latent_dim)
    return GrammarVAE(enc, dec, kl_weight=kl_weight, **_vae_options(hyper),
                      reconstruction_loss=_reconstruction(reconstruction, None))


@dataclass(frozen=True)
class GrammarModelEntry:
    build: Callable[..., nn.Module]
    weights: tuple[str, ...]  # the config's loss weights this model reads
    grammar: bool  # decodes through the grammar (False: characters)
    # the reconstruction term unless the config names one: the reference's for the Grammar VAE's
    # models; GRAE keeps the cross-entropy its β and λ were chosen with
    reconstruction: str = "reference_bce"


MODELS = {
    "grae": GrammarModelEntry(build_grae, ("beta", "reg_weight"), True, "cross_entropy"),
    "gvae": GrammarModelEntry(build_gvae, ("kl_weight",), True),
    "gcvvae": GrammarModelEntry(build_gcvvae, ("kl_weight",), True),
    "cvae": GrammarModelEntry(build_cvae, ("kl_weight",), False),
}


def build_model(name: str, codec, sizes: NetSizes, **hyper) -> nn.Module:
    if name not in MODELS:
        raise RaekitError(f"unknown grammar model {name!r}; choose from {sorted(MODELS)}")
    if hyper.get("reconstruction") is None:
        hyper["reconstruction"] = MODELS[name].reconstruction
    return MODELS[name].build(codec, sizes, **hyper)
