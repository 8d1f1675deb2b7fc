"""Pictures people would rather look at than read: labelled image grids.

Pixels stay pixels: small images are enlarged by an integer factor with nearest-neighbour
sampling (never stretched or smoothed), and each row carries its label on the left.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .files import atomic_path

PAD = 2


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
