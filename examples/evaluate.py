"""Evaluate a trained model as in the paper's Table 1: reconstructions, samples of N and GMM, and
interpolations, scored by the Fréchet distance of a digit classifier's features (domain FD), PRD
and k-NN precision/recall (the FID needs Inception and a while on a CPU: --fid on).

    python examples/evaluate.py --epochs 30 --out runs
"""

import argparse

from raekit import build_config, train
from raekit.evaluation import EvalSettings, evaluate_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", default="runs")
    p.add_argument("--fid", default="off", choices=("on", "off", "auto"))
    p.add_argument("--num-samples", type=int, default=299)
    p.add_argument("--domain-epochs", type=int, default=None,
                   help="training passes of the digit classifier (default 30; trained once, "
                        "then cached)")
    args = p.parse_args()

    cfg = build_config("digits/rae-l2", {"epochs": args.epochs, "out": args.out,
                                         "name": "example-evaluate", "progress": False})
    run_dir = train(cfg)
    metrics = evaluate_run(run_dir, EvalSettings(num_samples=args.num_samples, fid=args.fid,
                                                 domain_epochs=args.domain_epochs,
                                                 progress=False))
    print(f"{'set':7s} {'domain FD':>10s} {'PRD F8':>7s} {'F1/8':>6s}")
    for name, s in metrics["sets"].items():
        prd = s["prd_domain"]
        print(f"{name:7s} {s['domain_fd']:10.3f} {prd['f_8']:7.3f} {prd['f_1_8']:6.3f}")
    print(f"written: {run_dir / 'metrics.json'}")


if __name__ == "__main__":
    main()
