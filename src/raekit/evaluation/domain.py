"""A domain Fréchet distance: FID's recipe with a small classifier raekit trains itself.

Inception-v3 is slow on a CPU (≈ 0.06 s an image on 2 cores) and was trained on photographs. The
*domain FD* fits the same Gaussians (:mod:`raekit.frechet`) to the penultimate features of a small
CNN trained to classify the dataset's digits (scikit-learn's 8×8 ``digits``, or MNIST 32×32), the
way several MNIST papers report a "LeNet FID". Numbers are comparable between models evaluated
with the same classifier (the cache key includes its settings and seed), not with published FIDs.

The classifier: Conv 3×3 16 (stride 1), 32, 64, 128 (stride 2), each BN + ReLU; global average
pool → 128 features → Dense(10). Trained with Adam (one-cycle learning rate, one thread: the layers
are too small to share) on the dataset's training images (MNIST: the 60,000 training digits, one
pass, 97.9 % test accuracy; digits: 80 % of the 1,797 images, 30 passes, 98.3 % on the rest); the
weights are kept in the cache folder (:mod:`raekit.cache`), written atomically, and reused.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RaekitError
from ..files import cache_dir, key_digest, load_torch, save_torch

FORMAT_VERSION = 1


class DigitClassifier(nn.Module):
    """x (B, C, H, W) in [0, 1] → logits (B, classes); :meth:`features` gives (B, 128)."""

    def __init__(self, in_channels: int = 1, classes: int = 10, channels=(16, 32, 64, 128)):
        super().__init__()
        layers, c_in = [], in_channels
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, classes)
        self.feature_dim = c_in

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(2 * x - 1).mean(dim=(2, 3))  # (B, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class DomainSettings:
    """Everything the trained classifier depends on (part of its cache key)."""

    dataset: str
    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    max_train: int | None = None  # use at most this many training images (tests)


#: training budgets: MNIST one pass over the 60,000 digits (≈ 40 s of CPU time); digits 30 passes
DEFAULT_EPOCHS = {"digits": 30, "mnist": 1}
IMAGE_SIZE = {"digits": 8, "mnist": 32}


def labelled_data(dataset: str, data_root: str | os.PathLike | None = None):
    """(train_x, train_y, test_x, test_y): uint8 images (N, 1, H, W) and int64 labels."""
    from .. import data as rdata

    if dataset == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.from_numpy(np.round(d.images * (255 / 16)).astype(np.uint8))[:, None]
        y = torch.from_numpy(d.target.astype(np.int64))
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        cut = int(0.8 * len(x))
        return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]
    if dataset == "mnist":
        root = Path(data_root or os.environ.get("RAEKIT_DATA", "data")).expanduser()
        out = []
        for split in ("train", "t10k"):
            pi = rdata.find_mnist(root, f"{split}-images-idx3-ubyte")
            pl = rdata.find_mnist(root, f"{split}-labels-idx1-ubyte")
            if pi is None or pl is None:
                raise RaekitError(f"the domain classifier needs MNIST's images and labels "
                                  f"({split}-images-idx3-ubyte[.gz], "
                                  f"{split}-labels-idx1-ubyte[.gz]) under {root}; pass --data-root")
            x = torch.from_numpy(rdata.read_idx(pi).copy())
            y = torch.from_numpy(rdata.read_idx(pl).astype(np.int64))
            if len(x) != len(y):
                raise RaekitError(f"{pi.name} and {pl.name} hold different numbers of items")
            out += [F.pad(x, (2, 2, 2, 2))[:, None], y]  # 32×32, as raekit's MNIST
        return tuple(out)
    raise RaekitError(f"the domain FD has a classifier for 'digits' and 'mnist', not {dataset!r}")


def train_classifier(settings: DomainSettings, data_root=None, *, progress: bool = True
                     ) -> tuple[DigitClassifier, float]:
    """Train the classifier; return it (eval mode) and its accuracy on held-out images."""
    from tqdm.auto import tqdm

    xtr, ytr, xte, yte = labelled_data(settings.dataset, data_root)
    if settings.max_train:
        xtr, ytr = xtr[:settings.max_train], ytr[:settings.max_train]
    torch.manual_seed(settings.seed)
    g = torch.Generator().manual_seed(settings.seed)
    net = DigitClassifier(in_channels=xtr.shape[1])
    steps_per_epoch = -(-len(xtr) // settings.batch_size)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr,
                                                total_steps=settings.epochs * steps_per_epoch)
    net.train()
    # the layers are too small to split across threads: one thread is faster, and on a shared
    # machine many times faster (no threads spinning while they wait for a core)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = tqdm(total=settings.epochs * steps_per_epoch, disable=not progress,
               desc=f"domain classifier ({settings.dataset})", unit="step", leave=False)
    try:
        for _ in range(settings.epochs):
            perm = torch.randperm(len(xtr), generator=g)
            for i in range(0, len(xtr), settings.batch_size):
                idx = perm[i:i + settings.batch_size]
                loss = F.cross_entropy(net(xtr[idx].float() / 255), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    net.eval()
    return net, accuracy(net, xte, yte)


@torch.inference_mode()
def accuracy(net: DigitClassifier, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    correct = sum(int((net(x[i:i + batch].float() / 255).argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    return correct / max(len(x), 1)


class DomainFeatures:
    """Penultimate features of raekit's digit classifier: ``extractor(images) → (N, 128)``.

    Trains the classifier on first use and caches it; ``epochs`` defaults to
    :data:`DEFAULT_EPOCHS`.
    """

    name = "domain"

    def __init__(self, dataset: str, *, data_root=None, epochs: int | None = None, seed: int = 0,
                 max_train: int | None = None, progress: bool = True, batch_size: int = 500,
                 cache: str | os.PathLike | None = None):
        if dataset not in DEFAULT_EPOCHS:
            raise RaekitError(f"the domain FD has a classifier for {sorted(DEFAULT_EPOCHS)}, "
                              f"not {dataset!r}")
        self.settings = DomainSettings(dataset, epochs or DEFAULT_EPOCHS[dataset], seed=seed,
                                       max_train=max_train)
        self.batch_size = batch_size
        key = {"version": FORMAT_VERSION, **asdict(self.settings)}
        self.identity = f"domain-{dataset}-{key_digest(key)}"
        self.path = Path(cache or cache_dir()) / "domain" / f"{self.identity}.pt"
        if self.path.is_file():
            state = load_torch(self.path)
            self.net = DigitClassifier(in_channels=int(state["in_channels"]))
            self.net.load_state_dict(state["weights"])
            self.net.eval()
            self.accuracy = float(state["accuracy"])
            self.image_size = int(state["image_size"])
        else:
            self.net, self.accuracy = train_classifier(self.settings, data_root, progress=progress)
            self.image_size = IMAGE_SIZE[dataset]
            save_torch({"weights": self.net.state_dict(), "accuracy": self.accuracy,
                        "in_channels": self.net.body[0].in_channels, "image_size": self.image_size,
                        "settings": asdict(self.settings)}, self.path)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        c, s = self.net.body[0].in_channels, self.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise RaekitError(f"the {self.settings.dataset} domain classifier takes images shaped "
                              f"(N, {c}, {s}, {s}), got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255
        # quantise to 8 bits like FID does, so saved and in-memory images score the same
        x = images.float().clamp(0, 1).mul(255).round().div(255)
        return torch.cat([self.net.features(x[i:i + self.batch_size])
                          for i in range(0, len(x), self.batch_size)])
