"""Your own encoder and decoder, two ways: composed into a raekit model by hand, and named on
raekit's training loop as ``network=path/to/file.py:function``.

    python examples/custom_network.py --epochs 20 --out runs
"""

import argparse

import torch
from torch import nn

from raekit import Autoencoder, GradientPenalty, build_config, load_run, train


def mlp(*, channels: int, image_size: int, latent_dim: int, encoder_out: int):
    """raekit's network contract: (encoder, decoder) for square images; the decoder's output is
    in [0, 1] and has the images' shape."""
    n = channels * image_size * image_size
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, 128), nn.ReLU(),
                            nn.Linear(128, encoder_out))
    decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, n),
                            nn.Sigmoid(), nn.Unflatten(1, (channels, image_size, image_size)))
    return encoder, decoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default="runs")
    args = p.parse_args()

    # 1. by hand: any modules make an RAE; the regularizer owns its effect
    encoder, decoder = mlp(channels=1, image_size=8, latent_dim=4, encoder_out=4)
    model = Autoencoder(encoder, decoder, beta=1e-4, regularizer=GradientPenalty(1e-3))
    out = model(torch.rand(16, 1, 8, 8))
    print("one batch:", {k: round(float(v), 4) for k, v in out.items()})

    # 2. on raekit's training loop, from the preset, by naming the function
    cfg = build_config("digits/rae-gp", {"network": f"{__file__}:mlp", "latent_dim": 4,
                                         "epochs": args.epochs, "out": args.out,
                                         "name": "example-mlp", "progress": False})
    run = load_run(train(cfg))
    summary = run.summary()
    print(f"trained: best epoch {summary['best_epoch']}, held-out reconstruction error "
          f"{summary['val_at_best']['rec']:.4f}; pictures in {run.path}")


if __name__ == "__main__":
    main()
