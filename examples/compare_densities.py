"""Which ex-post density fits a trained model's codes best? Each density is fitted on the
training codes and scored by its log-likelihood on held-out codes (higher is better).

    python examples/compare_densities.py --epochs 30 --out runs
"""

import argparse

from raekit import DENSITIES, build_config, encode_dataset, load_run, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", default="runs")
    p.add_argument("--stage2-epochs", type=int, default=30, help="the two-stage density's VAE")
    args = p.parse_args()

    cfg = build_config("digits/rae-l2", {"epochs": args.epochs, "out": args.out,
                                         "name": "example-densities", "progress": False})
    run = load_run(train(cfg))
    model = run.load_model()
    train_codes = encode_dataset(model, run.splits.train, progress=False)
    held_out = encode_dataset(model, run.splits.val, progress=False)
    print(f"{len(train_codes)} training codes, {len(held_out)} held-out codes, "
          f"{train_codes.shape[1]} dimensions")
    print(f"{'density':10s} held-out log-likelihood per code")
    options = {"two-stage": {"epochs": args.stage2_epochs, "hidden": 128}}
    for name, cls in DENSITIES.items():
        density = cls(**options.get(name, {})).fit(train_codes)
        print(f"{name:10s} {density.score(held_out):8.3f}")


if __name__ == "__main__":
    main()
