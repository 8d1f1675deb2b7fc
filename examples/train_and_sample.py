"""Train an RAE-L2 on the bundled digits from Python, then sample it through a GMM.

    python examples/train_and_sample.py --epochs 30 --out runs
"""

import argparse

from raekit import DENSITIES, build_config, decode, encode_dataset, load_run, train
from raekit.pictures import image_rows, save_grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", default="runs")
    args = p.parse_args()

    # the shipped digits preset, with two settings changed
    cfg = build_config("digits/rae-l2", {"epochs": args.epochs, "out": args.out,
                                         "name": "example-rae-l2", "progress": False})
    run = load_run(train(cfg))
    model = run.load_model()

    # the ex-post density: a 10-component GMM on the training codes
    codes = encode_dataset(model, run.splits.train, progress=False)  # (N, d)
    density = DENSITIES["gmm"]().fit(codes)
    images = decode(model, density.sample(32, seed=0))  # (32, 1, 8, 8) in [0, 1]
    save_grid(image_rows(images, 8), run.path / "example-samples.png")
    print(f"held-out log-likelihood of the GMM: "
          f"{density.score(encode_dataset(model, run.splits.val, progress=False)):.2f} per code")
    print(f"samples: {run.path / 'example-samples.png'}")


if __name__ == "__main__":
    main()
