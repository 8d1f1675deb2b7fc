"""The grammar models against the reference code, mkusner/grammarVAE (issue 15): each reference
behaviour is recomputed here independently — numpy ports of the reference's formulas and
loops — and compared with raekit's.

Data: ``tests/data/zinc_sample.smi`` and ``tests/data/expressions_sample.txt`` hold 200 lines
each of ZINC-250k and of the Grammar VAE's expression file, drawn with numpy
``default_rng(15).choice`` (see their first lines), so that these tests run without the data.
"""

import collections
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nltk")

from raekit.grammar.characters import (  # noqa: E402
    ALPHABETS,
    Characters,
    character_expression_is_valid,
    expression_tokens,
)
from raekit.grammar.config import config_from_dict, make_config  # noqa: E402
from raekit.grammar.data import Encoded, split, validation_count  # noqa: E402
from raekit.grammar.grammars import expression_grammar, smiles_grammar  # noqa: E402
from raekit.grammar.models import (  # noqa: E402
    GrammarVAE,
    MaskedCrossEntropy,
    ReferenceBCE,
    StackDecoder,
    build_model,
)
from raekit.training.trainer import plateau_scheduler  # noqa: E402

DATA = Path(__file__).parent / "data"


def sample(name: str) -> list[str]:
    lines = (DATA / name).read_text().splitlines()
    return ["".join(s.split()) for s in lines if s.strip() and not s.startswith("#")]


# ---------------------------------------------------------------- the grammar's tables

def reference_tables(g):
    """``lhs_list``, ``masks`` and ``ind_of_ind`` built as zinc_grammar.py / eq_grammar.py do."""
    prods = g.cfg.productions()
    all_lhs = [p.lhs().symbol() for p in prods]
    lhs_list = []
    for a in all_lhs:
        if a not in lhs_list:
            lhs_list.append(a)
    masks = np.zeros((len(lhs_list), len(prods)))
    for i, sym in enumerate(lhs_list):
        masks[i] = np.array([a == sym for a in all_lhs], dtype=int)
    ind_of_ind = np.array([np.where(masks[:, i] == 1)[0][0] for i in range(masks.shape[1])])
    if g.name == "zinc":  # "rules 29 and 31 aren't used in the zinc data"
        masks[:, 29] = 0
        masks[:, 31] = 0
    return lhs_list, masks, ind_of_ind


ZINC_LHS_RUNS = [("smiles", 1), ("atom", 3), ("aliphatic_organic", 10), ("aromatic_organic", 4),
                 ("bracket_atom", 1), ("BAI", 4), ("BAC", 3), ("BAH", 3), ("BACH", 3),
                 ("symbol", 2), ("isotope", 3), ("DIGIT", 8), ("chiral", 2), ("hcount", 2),
                 ("charge", 6), ("bond", 5), ("ringbond", 2), ("branched_atom", 4), ("RB", 2),
                 ("BB", 2), ("branch", 2), ("chain", 3), ("Nothing", 1)]


def test_zinc_rule_order_and_masked_rules_29_and_31():
    g = smiles_grammar()
    # the reference's rule order, pinned: left sides in runs, a few rules, the whole list's hash
    assert [str(p.lhs()) for p in g.productions] == [s for s, n in ZINC_LHS_RUNS for _ in range(n)]
    assert str(g.productions[29]) == "BACH -> charge class"
    assert str(g.productions[31]) == "BACH -> class"
    assert str(g.productions[0]) == "smiles -> chain" and g.pad_rule == 75
    text = "\n".join(str(p) for p in g.productions)
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "b97fa2ad73a41b6f7445c1dd7992e494c4748ef6cef5fc12b184a1a0c8afc9e6")
    e = expression_grammar()
    assert hashlib.sha256("\n".join(str(p) for p in e.productions).encode()).hexdigest() == (
        "b22a6367bedc39d5eec35202bb909b7b9e7ba17aa00a2353a5196ae10bf7f2fc")
    for grammar in (g, e):
        lhs_list, masks, ind_of_ind = reference_tables(grammar)
        assert grammar.nonterminals == lhs_list
        assert np.array_equal(grammar.masks.numpy().astype(float), masks)
        assert np.array_equal(grammar.lhs.numpy(), ind_of_ind)
    # 29 and 31 can never be chosen, whatever the non-terminal
    assert not g.masks[:, 29].any() and not g.masks[:, 31].any()
    logits = torch.zeros(4, g.max_length, g.num_rules)
    logits[..., 29] = logits[..., 31] = 100.0
    rules, _ = StackDecoder(g)(logits)
    assert not ((rules == 29) | (rules == 31)).any()


# ---------------------------------------------------------------- the committed samples

def test_committed_samples_parse_and_round_trip():
    zinc, expressions = sample("zinc_sample.smi"), sample("expressions_sample.txt")
    assert len(zinc) == 200 and len(expressions) == 200
    g, e = smiles_grammar(), expression_grammar()
    zc, ec = Characters.reference("zinc"), Characters.reference("expressions")
    for codec, strings in ((g, zinc), (e, expressions), (zc, zinc), (ec, expressions)):
        idx = codec.to_indices([codec.parse(s) for s in strings])
        assert codec.from_indices(idx) == strings
    # the linear-time SMILES parser agrees with NLTK's chart parser (the reference's)
    for s in zinc[:40]:
        assert g.parse(s) == g.parse_nltk_tokens(g.tokenize(s), s)
    # the character model's validity: every data expression parses, but those that divide by
    # an integer zero at x = 0 (1/x, x/x, …) are invalid by the reference's rule
    for s in expressions:
        try:
            with np.errstate(all="ignore"):
                eval(s, {"__builtins__": {}}, {"sin": np.sin, "exp": np.exp, "x": 0})
            divides_by_zero = False
        except ZeroDivisionError:
            divides_by_zero = True
        assert character_expression_is_valid(s) == (not divides_by_zero), s
    from rdkit import Chem

    for s in zinc:
        back = g.from_indices(g.to_indices([g.parse(s)]))[0]
        assert Chem.MolToSmiles(Chem.MolFromSmiles(back)) == Chem.MolToSmiles(
            Chem.MolFromSmiles(s))


# ---------------------------------------------------------------- masked decoding

def reference_decode(g, unmasked: np.ndarray, gumbel: np.ndarray) -> list[list[int]]:
    """molecule_vae.ZincGrammarModel._sample_using_masks with the Gumbel noise given."""
    _, masks, _ = reference_tables(g)
    prods = g.cfg.productions()
    lhs_map = {s: i for i, s in enumerate(reference_tables(g)[0])}
    B, T, _ = unmasked.shape
    stacks = [[str(prods[0].lhs())] for _ in range(B)]
    out = np.zeros((B, T), dtype=int)
    for t in range(T):
        nxt = [lhs_map[s.pop() if s else "Nothing"] for s in stacks]
        masked = np.exp(unmasked[:, t, :]) * masks[nxt] + 1e-100
        chosen = np.argmax(gumbel[:, t, :] + np.log(masked), axis=-1)
        out[:, t] = chosen
        for b, r in enumerate(chosen):
            rhs = [str(s) for s in prods[r].rhs() if not isinstance(s, str) and str(s) != "None"]
            stacks[b].extend(rhs[::-1])
    return out.tolist()


def reference_prods_to_eq(g, rules: list[int]) -> str:
    """molecule_vae.prods_to_eq: rewrite the first occurrence of each rule's left side."""
    prods = g.cfg.productions()
    seq = [prods[rules[0]].lhs()]
    for r in rules:
        p = prods[r]
        if str(p.lhs()) == "Nothing":
            break
        for i, s in enumerate(seq):
            if s == p.lhs():
                seq = seq[:i] + list(p.rhs()) + seq[i + 1:]
                break
    return "".join(seq) if all(isinstance(s, str) for s in seq) else ""


@pytest.mark.parametrize("name", ["expressions", "zinc"])
@pytest.mark.parametrize("sample_noise", [False, True])
def test_stack_decoder_matches_a_port_of_the_reference(name, sample_noise):
    g = expression_grammar() if name == "expressions" else smiles_grammar()
    B = 64 if name == "expressions" else 12
    logits = torch.randn(B, g.max_length, g.num_rules, generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64) * 2
    if sample_noise:  # the decoder's own uniform draws, turned into Gumbel noise for the port
        u = torch.rand(B, g.max_length, g.num_rules, generator=torch.Generator().manual_seed(4))
        gumbel = -np.log(-np.log(u.clamp_min(1e-20).double().numpy()))
        rules, complete = StackDecoder(g)(logits, sample=True,
                                          generator=torch.Generator().manual_seed(4))
    else:
        gumbel = np.zeros(logits.shape)
        rules, complete = StackDecoder(g)(logits)
    expected = reference_decode(g, logits.numpy(), gumbel)
    assert rules.tolist() == expected
    strings = g.from_indices(rules)
    for s, ok, row in zip(strings, complete.tolist(), expected):
        ref = reference_prods_to_eq(g, row)
        assert (s or "") == ref and ok == (ref != "")
    assert complete.any()


# ---------------------------------------------------------------- the objective

def keras_reconstruction(x: np.ndarray, logits: np.ndarray, masks, ind_of_ind) -> float:
    """``conditional`` + ``max_length · binary_crossentropy(K.flatten(x), K.flatten(P))`` of
    models/model_zinc.py (masks=None: model_zinc_str.py's plain softmax), averaged over the
    batch as Keras does with a per-sample loss."""
    B, T, R = x.shape
    if masks is None:
        P = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    else:
        most_likely = x.argmax(-1).reshape(-1)
        M = masks[ind_of_ind[most_likely]].reshape(B, T, R)
        P = np.exp(logits) * M
        P = P / P.sum(-1, keepdims=True)
    xf, pf = x.reshape(-1), np.clip(P.reshape(-1), 1e-7, 1 - 1e-7)
    bce = np.mean(-(xf * np.log(pf) + (1 - xf) * np.log(1 - pf)))
    return T * bce


@pytest.mark.parametrize("name", ["expressions", "zinc", "characters"])
def test_reference_reconstruction_is_the_keras_formula(name):
    if name == "characters":
        codec = Characters.reference("expressions")
        strings = sample("expressions_sample.txt")[:6]
        masks = ind = None
    else:
        codec = expression_grammar() if name == "expressions" else smiles_grammar()
        strings = sample("expressions_sample.txt" if name == "expressions"
                         else "zinc_sample.smi")[:6]
        _, masks, ind = reference_tables(codec)
    x = codec.to_onehot([codec.parse(s) for s in strings]).double()
    logits = torch.randn(x.shape, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64) * 3
    loss = ReferenceBCE(None if name == "characters" else codec)(logits, x)
    expected = keras_reconstruction(x.numpy(), logits.numpy(), masks, ind)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    # the earlier loss is another number altogether, still on offer
    assert MaskedCrossEntropy(None if name == "characters" else codec)(logits, x).item() != (
        pytest.approx(expected, rel=1e-3))


class FixedEncoder(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.h = torch.nn.Parameter(h)

    def forward(self, x):
        return self.h.expand(len(x), -1)


class RecordingDecoder(torch.nn.Module):
    def forward(self, z):
        self.z = z
        return torch.zeros(len(z), 15, 12, dtype=z.dtype)


@pytest.mark.parametrize("options", [
    {},  # the reference: KL mean over dimensions, linear log-variance, noise 0.01
    {"kl_reduction": "sum"},
    {"log_var": "tanh", "epsilon_std": 1.0, "kl_reduction": "sum"},  # raekit's earlier VAE
])
def test_vae_objective_is_the_reference_formula(options):
    rng = np.random.default_rng(0)
    d = 5
    mu, raw = rng.normal(size=d), rng.normal(size=d)
    dec = RecordingDecoder()
    model = GrammarVAE(FixedEncoder(torch.tensor(np.concatenate([mu, raw]))[None]), dec,
                       reconstruction_loss=lambda x_hat, x: x_hat.sum() * 0, **options)
    x = torch.zeros(3, 15, 12, dtype=torch.float64)
    torch.manual_seed(7)
    out = model(x)
    torch.manual_seed(7)
    eps = torch.randn(3, d, dtype=torch.float64).numpy()
    if options.get("log_var", "linear") == "linear":
        log_var = raw  # z_log_var = Dense(linear)
    else:
        log_var = 2 * 5 * np.tanh(raw)
    kl = -0.5 * (1 + log_var - mu ** 2 - np.exp(log_var))  # Keras, before the reduction
    kl = kl.mean() if options.get("kl_reduction", "mean") == "mean" else kl.sum()
    assert out["kl"].item() == pytest.approx(kl, rel=1e-12)
    assert out["loss"].item() == pytest.approx(kl, rel=1e-12)
    std = options.get("epsilon_std", 0.01)
    z = mu + np.exp(log_var / 2) * std * eps  # the reference's sampling Lambda
    assert np.allclose(dec.z.detach().numpy(), z, rtol=1e-12)
    assert torch.equal(model.encode(x)[0], torch.tensor(mu))


@pytest.mark.parametrize("name", ["gvae", "gcvvae", "cvae", "grae"])
def test_the_config_defaults_are_the_references(name):
    cfg = make_config("expressions", name)
    assert (cfg.reconstruction, cfg.kl_reduction, cfg.log_var, cfg.epsilon_std) == (
        None, "mean", "linear", 0.01)
    codec = Characters.reference("expressions") if name == "cvae" else expression_grammar()
    model = build_model(name, codec, cfg.sizes, **cfg.hyper())
    # GRAE keeps the cross-entropy its β and λ were chosen with, unless told otherwise
    assert type(model.reconstruction_loss) is (MaskedCrossEntropy if name == "grae"
                                               else ReferenceBCE)
    assert model.reconstruction_loss.masked == (name != "cvae")
    told = build_model(name, codec, cfg.sizes, **{**cfg.hyper(), "reconstruction": "reference_bce"})
    assert type(told.reconstruction_loss) is ReferenceBCE
    if name != "grae":
        assert (model.epsilon_std, model.kl_reduction, model.log_var) == (0.01, "mean", "linear")
    # Keras' batch norm: momentum 0.99 (PyTorch 0.01), epsilon 1e-3
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 4 and all((b.momentum, b.eps) == (0.01, 1e-3) for b in bns)
    old = build_model(name, codec, cfg.sizes, **{**cfg.hyper(), "reconstruction": "cross_entropy",
                                                 "kl_reduction": "sum", "log_var": "tanh",
                                                 "epsilon_std": 1.0})
    assert type(old.reconstruction_loss) is MaskedCrossEntropy


def test_runs_saved_before_the_options_load_as_they_were_trained():
    saved = make_config("expressions", "gvae").to_dict()
    for key in ("reconstruction", "kl_reduction", "log_var", "epsilon_std", "charset",
                "plateau_factor", "plateau_patience", "plateau_min_lr", "plateau_mode"):
        saved.pop(key)
    cfg = config_from_dict(saved)
    assert (cfg.reconstruction, cfg.kl_reduction, cfg.log_var, cfg.epsilon_std, cfg.charset) == (
        "cross_entropy", "sum", "tanh", 1.0, "data")
    assert (cfg.plateau_factor, cfg.plateau_patience, cfg.plateau_mode) == (0.5, 5, "keras")


# ---------------------------------------------------------------- schedule and validation

class Keras121Plateau:
    """keras/callbacks.py ReduceLROnPlateau.on_epoch_end of Keras 1.2.1 (cooldown 0)."""

    def __init__(self, lr, factor, patience, min_lr, epsilon=1e-4):
        self.lr, self.factor, self.patience, self.min_lr, self.epsilon = (lr, factor, patience,
                                                                           min_lr, epsilon)
        self.best, self.wait, self.lr_epsilon = np.inf, 0, min_lr * 1e-4

    def on_epoch_end(self, current):
        if current < self.best - self.epsilon:
            self.best, self.wait = current, 0
        else:
            if self.wait >= self.patience:
                if self.lr > self.min_lr + self.lr_epsilon:
                    self.lr = max(self.lr * self.factor, self.min_lr)
                    self.wait = 0
            self.wait += 1
        return self.lr


@pytest.mark.parametrize("data,patience", [("expressions", 1), ("zinc", 3)])
def test_learning_rate_schedule_is_keras_1_2_1s(data, patience):
    cfg = make_config(data, "gvae", "paper")
    assert (cfg.plateau_factor, cfg.plateau_patience, cfg.plateau_min_lr,
            cfg.plateau_min_delta, cfg.lr) == (0.2, patience, 1e-4, 1e-4, 1e-3)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = plateau_scheduler(opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                              min_delta=cfg.plateau_min_delta, min_lr=cfg.plateau_min_lr,
                              mode=cfg.plateau_mode)
    keras = Keras121Plateau(cfg.lr, 0.2, patience, 1e-4)
    losses = [10, 9, 9, 9, 8.99995, 9, 9, 8, 8, 8, 8, 8, 7, 7.5, 7.2, 7.1, 7.0, 7, 7, 7, 7, 7, 7]
    ours, theirs = [], []
    for v in losses:
        sched.step(v)
        ours.append(opt.param_groups[0]["lr"])
        theirs.append(keras.on_epoch_end(v))
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert min(ours) == pytest.approx(1e-4) and len(set(ours)) == 3  # 1e-3, 2e-4, 1e-4
    # the state travels with checkpoints
    again = plateau_scheduler(opt, factor=0.2, patience=patience, min_lr=1e-4, mode="keras1")
    again.load_state_dict(sched.state_dict())
    assert (again.num_bad_epochs, again.best) == (sched.num_bad_epochs, sched.best)


@pytest.mark.parametrize("n,holdout,val", [(100000, 0, 10000), (249456, 5000, 24446),
                                           (2000, 200, 180), (37, 0, 4)])
def test_validation_is_the_last_tenth_as_keras_splits_it(n, holdout, val):
    rest = n - holdout
    split_at = int(rest * (1.0 - 0.1))  # keras/engine/training.py: fit(validation_split=0.1)
    assert validation_count(rest, 0.1) == rest - split_at == val
    if n <= 2000:
        enc = Encoded([str(i) for i in range(n)], torch.arange(n)[:, None], 0, [])
        s = split(enc, holdout=holdout, val_split=0.1)
        assert s.val == [str(i) for i in range(holdout + split_at, n)]  # unshuffled, last
        assert s.train == [str(i) for i in range(holdout, holdout + split_at)]
        assert len(s.test) == holdout
    assert make_config("zinc", "gvae", "paper").holdout == 5000
    assert make_config("expressions", "gvae", "paper").holdout == 0


# ---------------------------------------------------------------- the character model

def test_reference_alphabets_and_character_decoding():
    e, z = Characters.reference("expressions"), Characters.reference("zinc")
    assert e.symbols == ["x", "+", "(", ")", "1", "2", "3", "*", "/", "s", "i", "n", "e", "p", " "]
    assert z.symbols == ["C", "(", ")", "c", "1", "2", "o", "=", "O", "N", "3", "F", "[", "@",
                         "H", "]", "n", "-", "#", "S", "l", "+", "s", "B", "r", "/", "4", "\\",
                         "5", "6", "7", "I", "P", "8", " "]
    assert (e.num_rules, z.num_rules, e.max_length, z.max_length) == (15, 35, 19, 120)
    assert e.symbols == ALPHABETS["expressions"] and z.pad_rule == 34 and e.pad_rule == 14
    # single characters: Cl, Br, @@ and sin( are spelt out
    assert z.tokenize("ClC[C@@H]Br") == ["C", "l", "C", "[", "C", "@", "@", "H", "]", "B", "r"]
    assert e.tokenize("sin(x)") == ["s", "i", "n", "(", "x", ")"]
    # one-hot as make_zinc_dataset_str.py: the characters, then the space (last index)
    x = z.to_onehot([z.parse("CCl")])[0]
    assert x.argmax(-1).tolist() == [0, 0, 20] + [34] * 117
    # decoding: every character joined, then stripped (spaces inside stay)
    idx = [e.index[c] for c in "  x+ 1"] + [e.pad_rule] * 13
    assert e.from_rules(idx) == "x+ 1"
    assert e.from_rules([e.pad_rule] * 19) is None
    with pytest.raises(Exception, match="outside"):
        z.parse("C%1")
    assert len(z.symbols) == len(set(z.symbols))


def test_character_expression_validity_is_the_references():
    assert expression_tokens("sin(x)+exp(2)/3") == ["sin(", "x", ")", "+", "exp(", "2", ")", "/",
                                                    "3"]
    long = "+".join(["x"] * 10)  # 19 characters, 28 productions: beyond the grammar models' 15
    assert expression_grammar().try_parse(long) is None
    valid = ["x", "x+1", " sin(x) ", "x+ 1", "exp(x)/x", "sin(x)/sin(x)", long, "(((x)))"]
    invalid = ["1/x", "x/x", "2/(x*3)", "sin(x", "x+", "xx", "s in(x)", "", "   ", None, "4",
               "x1", "sinx",
               "2*x+exp1)+sin(3+1)", "sin1)"]  # a bare sin/exp: tokenized as "sin(", not that
    for s in valid:
        assert character_expression_is_valid(s), s
    for s in invalid:
        assert not character_expression_is_valid(s), s
    assert Characters.reference("expressions").is_valid("x+1") is True
    assert Characters.reference("zinc").is_valid("CC") is None  # RDKit's business


# ---------------------------------------------------------------- majority decoding

def reference_majority(decodings: list[list[str | None]], valid) -> list[str | None]:
    """run_bo.py's decode_from_latent_space after its decode_attempts: per point, the most common
    of the valid decodings (None when none is valid)."""
    final = []
    for j in range(len(decodings[0])):
        aux = collections.Counter(d[j] for d in decodings if d[j] is not None and valid(d[j]))
        final.append(max(aux.items(), key=lambda kv: kv[1])[0] if aux else None)
    return final


def test_majority_decoding_keeps_the_most_frequent_valid_string():
    from raekit.grammar.metrics import most_frequent_valid

    rng = np.random.default_rng(1)
    pool = ["x", "x+1", "sin(x)", "x*2", None, None]
    for _ in range(30):
        attempts = 25
        draws = [[pool[i] for i in rng.choice(len(pool), 3, p=[.3, .2, .15, .1, .15, .1])]
                 for _ in range(attempts)]
        expected = reference_majority(draws, lambda s: expression_grammar().try_parse(s)
                                      is not None)
        for j in range(3):
            column = [d[j] for d in draws]
            counts = collections.Counter(s for s in column if s is not None)
            top = counts.most_common(2)
            if len(top) == 2 and top[0][1] == top[1][1]:
                continue  # a tie: the reference's pick depends on Python 2's dict order
            assert most_frequent_valid(column, "expressions") == expected[j]
    assert most_frequent_valid([None, None], "expressions") is None


def test_a_tiny_cvae_trains_with_the_reference_alphabet_and_reloads(tmp_path):
    """The character model end to end: the reference's alphabet, the reference's objective and
    schedule, the reference's validity of its decodings; the run reloads with its alphabet."""
    import json

    from raekit.grammar.models import one_thread
    from raekit.grammar.train import codec_valid_share, load_run, train

    path = tmp_path / "eq.txt"
    path.write_text("\n".join(sample("expressions_sample.txt")) + "\n")
    cfg = make_config("expressions", "cvae", data_path=str(path), limit=None, holdout=20,
                      epochs=2, batch_size=32, hidden=16, out=str(tmp_path / "runs"),
                      name="cvae", progress=False, eval_items=10, eval_decodes=1,
                      eval_samples=20, eval_densities=("prior",), accelerator="cpu")
    with one_thread():
        run_dir = train(cfg, trainer_overrides={"enable_model_summary": False,
                                                 "log_every_n_steps": 1})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["test"], metrics["val"], metrics["train"]) == (20, 18, 162)  # 180 − int(162)
    run = load_run(run_dir)
    assert run.codec.symbols == ALPHABETS["expressions"] and run.codec.max_length == 19
    assert isinstance(run.model, GrammarVAE) and run.model.epsilon_std == 0.01
    decoded = ["x+1", "1/x", None, "x+ 1"]
    assert codec_valid_share(run.codec, decoded, "expressions") == 0.5


def test_majority_decoding_judges_character_expressions_by_the_character_rule():
    from raekit.grammar.metrics import decode_majority, most_frequent_valid, valid_share

    chars = Characters.reference("expressions")
    draws = ["1/x", "1/x", "1/x", "x+1"]  # 1/x: grammar-valid, but fails at x = 0
    assert most_frequent_valid(draws, "expressions") == "1/x"
    assert most_frequent_valid(draws, "expressions", chars) == "x+1"
    assert valid_share(draws, "expressions") == 1.0
    assert valid_share(draws, "expressions", chars) == 0.25
    assert callable(decode_majority)
