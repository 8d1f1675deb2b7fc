"""Pictures people would rather look at than read: labelled image grids.

Pixels stay pixels: small images are enlarged by an integer factor with nearest-neighbour
sampling (never stretched or smoothed), and each row carries its label on the left.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import RaekitError
from .files import atomic_path

PAD = 2


def to_uint8(x: torch.Tensor, *, method: str = "round") -> torch.Tensor:
    """Images in [0, 1] → uint8 pixels, as they are saved (and as the FID networks see them).

    ``method``: ``"round"`` (the nearest level, round(255·x); raekit's pictures) or
    ``"truncate"`` (floor(255·x), the reference code's ``(clip(x, 0, 1) * 255).astype(uint8)``,
    so only x = 1 reaches 255). A :data:`QUANTISATIONS` name.
    """
    if method not in QUANTISATIONS:
        raise RaekitError(f"unknown quantisation {method!r}; choose one of {list(QUANTISATIONS)}")
    return QUANTISATIONS[method](x.clamp(0, 1).mul(255)).to(torch.uint8)


#: 8-bit quantisations of 255·x (x clipped to [0, 1]) by name
QUANTISATIONS = {"round": torch.round, "truncate": torch.floor}


def save_pngs(images: torch.Tensor, folder: str | os.PathLike, *, prefix: str = "sample",
              start: int = 0) -> list[str]:
    """One 8-bit PNG per image of (N, C, H, W) in [0, 1] (grey for C = 1), named
    ``<prefix>-<index>.png``, each written atomically; return the names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    width = max(5, len(str(start + len(pixels) - 1)))
    names = []
    for i, img in enumerate(pixels, start):
        name = f"{prefix}-{i:0{width}d}.png"
        with atomic_path(folder / name) as tmp:
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp, format="PNG")
        names.append(name)
    return names


def _scale_for(size: int) -> int:
    return max(1, 64 // size)  # 8×8 digits → 8×, 32×32 → 2×, 64×64 → 1×


def grid_image(rows: list[torch.Tensor], labels: list[str] | None = None,
               scale: int | None = None) -> Image.Image:
    """Rows of images, each (N, C, H, W) in [0, 1], as one labelled RGB picture."""
    c, h, w = rows[0].shape[1:]
    scale = scale or _scale_for(max(h, w))
    ncols = max(len(r) for r in rows)
    font = ImageFont.load_default()
    label_w = 0
    if labels:
        draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        label_w = max(int(draw.textlength(t, font=font)) for t in labels) + 2 * PAD + 4
    cell_h, cell_w = h * scale + PAD, w * scale + PAD
    canvas = Image.new("RGB", (label_w + ncols * cell_w + PAD, len(rows) * cell_h + PAD), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        arr = row.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
        if arr.shape[1] == 1:
            arr = arr.expand(-1, 3, -1, -1)
        arr = arr.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        for i, img in enumerate(arr.permute(0, 2, 3, 1).numpy()):
            canvas.paste(Image.fromarray(np.ascontiguousarray(img)),
                         (label_w + PAD + i * cell_w, PAD + r * cell_h))
        if labels:
            draw.text((PAD, PAD + r * cell_h + (h * scale) // 2 - 5), labels[r], fill="black",
                      font=font)
    return canvas


def save_grid(rows: list[torch.Tensor], path: str | os.PathLike, labels: list[str] | None = None,
              scale: int | None = None) -> None:
    """Write :func:`grid_image` to ``path`` as PNG, atomically."""
    with atomic_path(path) as tmp:
        grid_image(rows, labels, scale).save(tmp, format="PNG")


def image_rows(images: torch.Tensor, per_row: int) -> list[torch.Tensor]:
    """Split (N, C, H, W) into rows of ``per_row`` images."""
    return [images[i:i + per_row] for i in range(0, len(images), per_row)]


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv``, numbers as floats (missing values left out)."""
    import csv

    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in (None, "")}
                for row in csv.DictReader(f)]


def epoch_curves(rows: list[dict[str, float]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{term: {"train": [(epoch, value)], "val": […]}, "lr": {"lr": […]}}`` from the rows of
    ``metrics.csv`` (the training terms' epoch means and the validation terms)."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in rows:
        if "epoch" not in row:
            continue
        epoch = int(row["epoch"]) + 1
        for key, value in row.items():
            if key.startswith("train_") and key.endswith("_epoch"):
                term, split = key[len("train_"):-len("_epoch")], "train"
            elif key.startswith("val_"):
                term, split = key[len("val_"):], "val"
            elif key == "lr":
                term, split = "lr", "lr"
            else:
                continue
            curves.setdefault(term, {}).setdefault(split, []).append((epoch, value))
    return curves


def save_training_curves(metrics_csv: str | os.PathLike, path: str | os.PathLike,
                         title: str = "") -> None:
    """One panel per loss term (training mean and validation per epoch) and one for the
    learning rate, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    curves = epoch_curves(read_metrics(metrics_csv))
    terms = [t for t in ("loss", "rec", "latent", "reg", "kl", "mmd") if t in curves]
    terms += sorted(t for t in curves if t not in terms and t != "lr") + ["lr"] * ("lr" in curves)
    if not terms:
        return
    cols = min(3, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        for split, points in sorted(curves[term].items()):
            epochs, values = zip(*points)
            ax.plot(epochs, values, marker="o" if len(points) < 30 else None, markersize=3,
                    label={"train": "training (epoch mean)", "val": "validation"}.get(split, split))
        values = [v for points in curves[term].values() for _, v in points]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        ax.set_title("learning rate" if term == "lr" else term)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if term != "lr":
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
