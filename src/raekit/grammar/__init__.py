"""Structured objects: grammar autoencoders on expressions and molecules, with Bayesian
optimisation in their latent space (Ghosh et al. 2020 §6.2 after Kusner et al. 2017;
the reference code mkusner/grammarVAE). Needs the ``molecules`` extra (nltk, rdkit, botorch,
gpytorch).

    from raekit.grammar.grammars import smiles_grammar
    g = smiles_grammar()
    x = g.encode_strings(["CC(=O)Oc1ccccc1C(=O)O"])          # (1, 277, 76) one-hot
    from raekit.grammar.config import build_grammar_config
    from raekit.grammar.train import train, load_run
    cfg = build_grammar_config("expressions/small", {"model": "grae", "data_path": "eq.txt"})
    run = load_run(train(cfg))
    from raekit.grammar.metrics import decode_strings
    decode_strings(run.model, run.codec, z)                # masked decoding → strings

Modules: ``grammars`` (CFGs, tokens, parse ↔ productions ↔ one-hot, masks), ``characters``
(the character baseline's vocabulary), ``models`` (encoder, GRU decoder, masked loss, batched
stack decoding, the four models), ``scores``, ``metrics``, ``bo``, ``sparse_gp`` (the
reference's SEP sparse GP and batch EI), ``data``, ``config``,
``train``. The commands are in :mod:`raekit.cli.grammar`.
"""
