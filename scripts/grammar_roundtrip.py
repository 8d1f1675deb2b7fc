"""Round-trip the full data sets through the grammars: string → productions → string.

    python scripts/grammar_roundtrip.py --data-root ../shared/data [--stats] [--nltk-check 500]

Counts, for all 100,000 expressions and all of ZINC-250k: strings read, parsed, decoded back to
the identical string, (ZINC) decoded back to the same canonical SMILES (RDKit), the longest
production sequence, and the parsing time. ``--nltk-check N`` compares the fast SMILES parser
with NLTK's chart parser on N random molecules; ``--stats`` also computes the mean and standard
deviation of logP, SA score and ring penalty over ZINC-250k (the standardisation of penalised
logP). Writes JSON (default benchmarks/results/grammar_roundtrip.json).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from raekit.errors import RaekitError
from raekit.files import save_json
from raekit.grammar.data import DEFAULT_FILES, read_strings
from raekit.grammar.grammars import expression_grammar, smiles_grammar


def round_trip(grammar, strings, canonical=None):
    t0 = time.perf_counter()
    parsed, same, longest, failures = 0, 0, 0, []
    seqs = []
    for s in tqdm(strings, desc=f"parsing {grammar.name}", mininterval=2.0):
        try:
            rules = grammar.parse(s)
        except RaekitError as e:
            failures.append(f"{s}: {e}")
            seqs.append(None)
            continue
        parsed += 1
        longest = max(longest, len(rules))
        seqs.append(rules)
    parse_s = time.perf_counter() - t0
    back = []
    for s, rules in zip(strings, seqs):
        b = grammar.from_rules(rules) if rules is not None else None
        same += b == s
        back.append(b)
    out = {"strings": len(strings), "parsed": parsed, "round_trip_identical": same,
           "longest_sequence": longest, "parse_seconds": round(parse_s, 2),
           "parse_per_second": round(len(strings) / parse_s, 1), "failures": failures[:10]}
    if canonical is not None:
        t1 = time.perf_counter()
        out["round_trip_canonical_equal"] = sum(
            b is not None and canonical(b) == canonical(s)
            for s, b in tqdm(list(zip(strings, back)), desc="canonical SMILES", mininterval=2.0))
        out["canonical_seconds"] = round(time.perf_counter() - t1, 2)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=os.environ.get("RAEKIT_DATA", "../shared/data"))
    p.add_argument("--only", choices=["expressions", "zinc"])
    p.add_argument("--stats", action="store_true", help="ZINC mean/std of logP, SA, ring penalty")
    p.add_argument("--nltk-check", type=int, default=500)
    p.add_argument("--output", default="benchmarks/results/grammar_roundtrip.json")
    args = p.parse_args(argv)
    root = Path(args.data_root)
    results = {}
    try:
        if args.only in (None, "expressions"):
            strings = read_strings(root / DEFAULT_FILES["expressions"])
            results["expressions"] = round_trip(expression_grammar(), strings)
            print(results["expressions"], flush=True)
        if args.only in (None, "zinc"):
            from rdkit import Chem, RDLogger

            RDLogger.DisableLog("rdApp.*")

            def canonical(s):
                m = Chem.MolFromSmiles(s)
                return Chem.MolToSmiles(m) if m is not None else None

            g = smiles_grammar()
            strings = read_strings(root / DEFAULT_FILES["zinc"])
            results["zinc"] = round_trip(g, strings, canonical)
            if args.nltk_check:
                sample = random.Random(0).sample(strings, min(args.nltk_check, len(strings)))
                t0 = time.perf_counter()
                agree = sum(g.parse(s) == g.parse_nltk_tokens(g.tokenize(s), s)
                            for s in tqdm(sample, desc="NLTK check"))
                nltk_s = time.perf_counter() - t0
                results["zinc"]["nltk_check"] = {
                    "molecules": len(sample), "identical_production_sequences": agree,
                    "nltk_ms_per_molecule": round(1000 * nltk_s / len(sample), 2)}
            print(results["zinc"], flush=True)
            if args.stats:
                from raekit.grammar.scores import molecule_terms

                terms = np.array([molecule_terms(s) for s in tqdm(strings, desc="logP/SA/ring",
                                                                  mininterval=2.0)])
                results["zinc_stats"] = {k: [float(terms[:, i].mean()), float(terms[:, i].std())]
                                         for i, k in enumerate(["logp", "sa", "ring"])}
                print(results["zinc_stats"], flush=True)
    except RaekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_json(results, args.output)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
