"""Image datasets (Ghosh et al. 2020, §6 and appendix) and the held-out validation split.

Every dataset is a *pool* of training images plus, where the dataset has one, a test set. The
validation set is held out of the pool with a fixed seed (``split_seed``), so it never overlaps
the training set (the reference code's MNIST/CIFAR validation set did). Images come out as float
tensors (C, H, W) in [0, 1].

=========  =====================================================================================
digits     scikit-learn's 1,797 real 8×8 handwritten digits (ships with scikit-learn; default)
mnist      the idx files (``MNIST/raw/*-ubyte[.gz]``), padded 2 px per side to 32×32
cifar10    the binary version (``cifar-10-batches-bin/*.bin``; holds no pickled objects)
celeba     ``img_align_celeba/NNNNNN.jpg``: 140×140 centre crop, resized to 64×64; official
           partition by image number (train ≤ 162770, test ≥ 182638)
npz        an array of images in a ``.npz`` file (N,H,W), (N,H,W,C) or (N,C,H,W)
folder     every image file below a folder, centre-cropped to a square and resized
=========  =====================================================================================
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from .errors import RaekitError

if TYPE_CHECKING:
    from .training.config import TrainConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class ImageTensorDataset(Dataset):
    """Images held in memory as uint8 (N, C, H, W) (or float in [0, 1]); items are float [0, 1]."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return x.float().div_(255) if x.dtype == torch.uint8 else x.float()

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])


class ImageFileDataset(Dataset):
    """Image files decoded on access: optional centre crop, square crop, resize (antialiased)."""

    def __init__(self, paths: list[Path], size: int, channels: int, crop: int | None = None):
        self.paths, self.size, self.channels, self.crop = list(paths), size, channels, crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms.functional import center_crop, pil_to_tensor, resize

        path = self.paths[i]
        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                x = pil_to_tensor(im)
        except (OSError, UnidentifiedImageError) as e:
            raise RaekitError(f"cannot read image {path}: {e}") from None
        side = self.crop or min(x.shape[-2:])
        x = center_crop(x, [side, side])
        x = resize(x, [self.size, self.size], antialias=True)
        return x.float().div_(255)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


@dataclass
class Splits:
    """Train/validation/test datasets of one source; ``test`` falls back to ``val``."""

    train: Dataset
    val: Dataset
    test: Dataset
    shape: tuple[int, int, int]  # (C, H, W)
    name: str


# ----------------------------------------------------------------------------- sources


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = data[0:2], data[2], data[3]
        if zero != b"\x00\x00" or dtype_code != 0x08:
            raise ValueError("bad header")
        dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(dims)
    except (OSError, ValueError, EOFError, struct.error) as e:
        raise RaekitError(f"{path} is not a valid idx file (corrupt or truncated?): {e}") from None


def _download_hint(what: str, root: Path, files: str, error: Exception | None) -> RaekitError:
    why = f" (download failed: {str(error).splitlines()[0][:120]})" if error else ""
    return RaekitError(f"{what} not found under {root}{why}: put {files} there, "
                       f"or pass data_root=<folder that holds them>")


def _try_download(fn: Callable[[], None], allowed: bool = True) -> Exception | None:
    """Run a torchvision download with a short network timeout; return the error, if any."""
    if not allowed:
        return None
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    try:
        fn()
        return None
    except Exception as e:  # any failure means "not downloaded"; the caller explains what to do
        return e
    finally:
        socket.setdefaulttimeout(old)


def find_mnist(root: Path, stem: str) -> Path | None:
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load_digits(cfg: TrainConfig):
    from sklearn.datasets import load_digits as sk_digits

    x = sk_digits().images  # (1797, 8, 8) floats in 0..16
    x = torch.from_numpy(np.round(x * (255 / 16)).astype(np.uint8))[:, None]
    return ImageTensorDataset(x), None


def load_mnist(cfg: TrainConfig):
    root = data_root(cfg)
    stems = {s: f"{s}-images-idx3-ubyte" for s in ("train", "t10k")}
    if any(find_mnist(root, s) is None for s in stems.values()):
        def download():
            from torchvision.datasets import MNIST
            MNIST(str(root), train=True, download=True)
            MNIST(str(root), train=False, download=True)
        err = _try_download(download, cfg.download)
        if any(find_mnist(root, s) is None for s in stems.values()):
            raise _download_hint("MNIST", root / "MNIST" / "raw",
                                 "train-images-idx3-ubyte.gz and t10k-images-idx3-ubyte.gz", err)
    out = []
    for stem in stems.values():
        x = torch.from_numpy(read_idx(find_mnist(root, stem)).copy())
        if x.shape[1:] != (28, 28):
            raise RaekitError(f"MNIST images should be 28×28, got {tuple(x.shape[1:])}")
        out.append(ImageTensorDataset(F.pad(x, (2, 2, 2, 2))[:, None]))  # 32×32, as the paper
    return out[0], out[1]


CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"


def _read_cifar_bin(paths: list[Path]) -> torch.Tensor:
    chunks = []
    for p in paths:
        raw = np.fromfile(p, dtype=np.uint8)
        if raw.size % 3073:
            raise RaekitError(f"{p} is not a CIFAR-10 binary batch (size {raw.size} bytes)")
        chunks.append(raw.reshape(-1, 3073)[:, 1:].reshape(-1, 3, 32, 32))
    return torch.from_numpy(np.concatenate(chunks))


def load_cifar10(cfg: TrainConfig):
    root = data_root(cfg)
    folder = next((f for f in (root / "cifar-10-batches-bin", root)
                   if (f / "test_batch.bin").is_file()), None)
    if folder is None:
        from torchvision.datasets.utils import download_and_extract_archive

        err = _try_download(
            lambda: download_and_extract_archive(CIFAR_URL, str(root), md5=CIFAR_MD5),
            cfg.download)
        folder = root / "cifar-10-batches-bin"
        if not (folder / "test_batch.bin").is_file():
            raise _download_hint("CIFAR-10 (binary version)", folder,
                                 "data_batch_1.bin … data_batch_5.bin and test_batch.bin "
                                 f"(from {CIFAR_URL})", err)
    train = [folder / f"data_batch_{i}.bin" for i in range(1, 6)]
    missing = [p.name for p in train if not p.is_file()]
    if missing:
        raise RaekitError(f"CIFAR-10 training batches missing in {folder}: {', '.join(missing)}")
    return (ImageTensorDataset(_read_cifar_bin(train)),
            ImageTensorDataset(_read_cifar_bin([folder / "test_batch.bin"])))


CELEBA_TRAIN_LAST, CELEBA_TEST_FIRST = 162770, 182638


def load_celeba(cfg: TrainConfig):
    root = data_root(cfg)
    folder = next((f for f in (root / "celeba" / "img_align_celeba",
                               root / "img_align_celeba", root)
                   if f.is_dir() and any(f.glob("*.jpg"))), None)
    if folder is None:
        def download():
            from torchvision.datasets import CelebA
            CelebA(str(root), split="all", download=True)
        err = _try_download(download, cfg.download)
        folder = root / "celeba" / "img_align_celeba"
        if not (folder.is_dir() and any(folder.glob("*.jpg"))):
            raise _download_hint("CelebA", folder,
                                 "the aligned-and-cropped JPEGs (000001.jpg …)", err)
    numbered = [(int(p.stem), p) for p in sorted(folder.glob("*.jpg")) if p.stem.isdigit()]
    train = [p for n, p in numbered if n <= CELEBA_TRAIN_LAST]
    test = [p for n, p in numbered if n >= CELEBA_TEST_FIRST]
    if not train:
        raise RaekitError(f"no CelebA training images (numbered ≤ {CELEBA_TRAIN_LAST}) in {folder}")
    make = lambda paths: ImageFileDataset(paths, size=64, channels=3, crop=140)  # noqa: E731
    return make(train), (make(test) if test else None)


def _to_nchw(x: np.ndarray, source: Path) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        return x
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    raise RaekitError(f"{source}: expected images shaped (N,H,W), (N,H,W,C) or (N,C,H,W) with "
                      f"C = 1 or 3, got {x.shape}")


def load_npz(cfg: TrainConfig):
    path = Path(cfg.data_root or "")
    if not path.is_file():
        raise RaekitError(f"dataset=npz needs data_root=<file.npz>; no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise RaekitError(f"{path} is not an .npz archive (numpy.savez writes a zip of .npy "
                          "arrays); save the images with numpy.savez(path, x=images)")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            key = next((k for k in ("x", "images", "arr_0") if k in keys),
                       keys[0] if len(keys) == 1 else None)
            if key is None:
                raise RaekitError(f"{path} holds {keys}; name the image array 'x' or 'images'")
            x = f[key]
    except RaekitError:
        raise
    except Exception as e:  # zipfile/ValueError/pickle refusal: all mean "not a usable npz"
        raise RaekitError(f"{path} is not a readable .npz of images: {e}") from None
    x = _to_nchw(np.asarray(x), path)
    if x.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise RaekitError(f"{path}: float images must be finite and in [0, 1]")
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        raise RaekitError(f"{path}: images must be uint8 or float in [0, 1], got {x.dtype}")
    if t.shape[-1] != t.shape[-2]:
        raise RaekitError(f"{path}: images must be square, got {t.shape[-2]}×{t.shape[-1]}")
    if cfg.image_size and cfg.image_size != t.shape[-1]:
        t = F.interpolate(t.float() / (255 if t.dtype == torch.uint8 else 1), size=cfg.image_size,
                          mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return ImageTensorDataset(t), None


def load_folder(cfg: TrainConfig):
    root = Path(cfg.data_root or "")
    if not root.is_dir():
        raise RaekitError("dataset=folder needs data_root=<folder of images>; "
                          f"no such folder: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise RaekitError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    ds = ImageFileDataset(paths, size=cfg.image_size or 64, channels=cfg.channels or 3)
    ds[0]  # fail now, with the file's name, if the first image is unreadable
    return ds, None


DATASETS: dict[str, Callable] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "celeba": load_celeba,
    "npz": load_npz,
    "folder": load_folder,
}

def data_root(cfg: TrainConfig) -> Path:
    return Path(cfg.data_root or os.environ.get("RAEKIT_DATA", "data")).expanduser()


#: the fewest training images raekit trains on (fewer cannot fill a batch worth the name)
MIN_TRAIN_IMAGES = 10


def load_splits(cfg: TrainConfig) -> Splits:
    """The dataset named by ``cfg.dataset``, split into train/validation/test."""
    if cfg.dataset not in DATASETS:
        raise RaekitError(f"unknown dataset {cfg.dataset!r}; choose one of {sorted(DATASETS)}")
    pool, test = DATASETS[cfg.dataset](cfg)
    n = len(pool)
    v = cfg.val_size if cfg.val_size is not None else min(10000, max(n // 6, 1))
    n_val = max(int(round(v * n)), 1) if v < 1 else int(v)
    if n - n_val < MIN_TRAIN_IMAGES:
        raise RaekitError(
            f"dataset {cfg.dataset!r} has {n} image(s): holding out val_size={v} ({n_val} "
            f"image(s)) leaves {max(n - n_val, 0)} for training; raekit needs at least "
            f"{MIN_TRAIN_IMAGES} training images and 1 validation image (give more images or a "
            f"smaller val_size)")
    g = torch.Generator().manual_seed(cfg.split_seed)
    perm = torch.randperm(n, generator=g).tolist()
    val, train = Subset(pool, perm[:n_val]), Subset(pool, perm[n_val:])
    return Splits(train, val, test if test is not None else val, shape=tuple(pool.shape),
                  name=cfg.dataset)


class EpochOrder(Sampler[int]):
    """A new random order of ``n`` items each epoch, drawn from a generator of its own (so that
    a checkpoint can hold it), which can replay the rest of an interrupted epoch.

    :meth:`state_dict` records the order of the current epoch and how many batches of it were
    trained; after :meth:`load_state_dict`, iterations give the same order with those batches
    skipped, until one has run to its end (the next epoch then draws a new order).
    """

    def __init__(self, n: int, seed: int = 0, *, batch_size: int = 1, world_size: int = 1):
        self.n, self.batch_size, self.world_size = n, batch_size, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start = self.generator.get_state()
        self._replay: dict | None = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        skip = 0
        if self._replay is not None:
            self.generator.set_state(self._replay["epoch_start"])
            skip = self._replay["batches"] * self.batch_size * self.world_size
        self.epoch_start = self.generator.get_state()
        yield from torch.randperm(self.n, generator=self.generator)[skip:].tolist()
        self._replay = None  # the interrupted epoch is over

    def state_dict(self, batches_trained: int) -> dict:
        return {"epoch_start": self.epoch_start, "batches": batches_trained,
                "next_epoch": self.generator.get_state()}

    def load_state_dict(self, state: dict, *, mid_epoch: bool) -> None:
        """Continue the interrupted epoch (``mid_epoch``), or start the next one."""
        self._replay = state if mid_epoch else None
        self.generator.set_state(state["next_epoch"])


def loader(ds: Dataset, cfg: TrainConfig, *, shuffle: bool = False, batch_size: int | None = None,
           order: EpochOrder | None = None):
    """Batches of ``ds``; a shuffled loader takes its order from ``order`` when given."""
    return DataLoader(ds, batch_size=batch_size or cfg.batch_size, shuffle=shuffle and not order,
                      sampler=order, num_workers=cfg.num_workers,
                      persistent_workers=cfg.num_workers > 0, drop_last=False)


def images_of(batch) -> torch.Tensor:
    """The images of a batch that is a tensor or an ``(x, y, …)`` tuple."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def first_images(ds: Dataset, n: int) -> torch.Tensor:
    n = min(n, len(ds))
    return torch.stack([images_of(ds[i]) for i in range(n)])
