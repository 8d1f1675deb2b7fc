"""Would bfloat16 feature networks move the FID? MNIST at 10,000 images, float32 against bf16.

Two sets of real MNIST images — the 10,000 test images and the first 10,000 training images (as
``raekit`` feeds them: padded to 32×32) — go through the FID network (the TF Inception file,
:class:`raekit.evaluation.fid.InceptionFeatures`) and through raekit's MNIST domain classifier,
once in float32 (raekit's path) and once under ``torch.autocast("cpu", torch.bfloat16)`` (the
network rebuilt, not traced). Reported per network: the Fréchet distance between the two sets in
each precision, their difference, and images/s of each path.

The rule (issue 14): bfloat16 features only if the FID moves by less than 0.1; otherwise
evaluation keeps float32.

    python benchmarks/fid_precision.py --data-root ../shared/data [--images 10000]
        [--out benchmarks/results/fid_precision.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
from train_throughput import cpu_info, matmul_rate  # this folder's script: the same record

from raekit.data import find_mnist, read_idx
from raekit.evaluation.domain import DomainFeatures
from raekit.evaluation.fid import FIDInception, InceptionFeatures, load_scripted, preprocess
from raekit.evaluation.frechet import frechet_distance_of_features


def mnist(root: Path, stem: str, n: int) -> torch.Tensor:
    x = torch.from_numpy(read_idx(find_mnist(root, stem))[:n].copy())
    return torch.nn.functional.pad(x, (2, 2, 2, 2))[:, None]  # (n, 1, 32, 32) uint8


def timed(fn, x):
    t = time.perf_counter()
    f = fn(x)
    return f, len(x) / (time.perf_counter() - t)


class BF16Inception:
    """The FID network, rebuilt, run under bfloat16 autocast (eager: for the numbers only)."""

    def __init__(self, fp32: InceptionFeatures):
        self.net = FIDInception(load_scripted(fp32.path)).eval().to(
            memory_format=torch.channels_last)
        self.batch_size = 32

    @torch.inference_mode()
    def __call__(self, images):
        out = []
        for i in range(0, len(images), self.batch_size):
            x = preprocess(images[i:i + self.batch_size]).contiguous(
                memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                f = self.net(x)
            out.append(f.reshape(len(f), -1).float())
        return torch.cat(out)


def domain_bf16(domain: DomainFeatures):
    def run(images):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return domain(images).float()
    return run


def compare(name: str, fp32_fn, bf16_fn, a: torch.Tensor, b: torch.Tensor) -> dict:
    out: dict = {}
    feats = {}
    for prec, fn in (("float32", fp32_fn), ("bfloat16", bf16_fn)):
        fa, ra = timed(fn, a)
        fb, rb = timed(fn, b)
        feats[prec] = (fa, fb)
        out[prec] = {"fd": frechet_distance_of_features(fa.double().numpy(),
                                                        fb.double().numpy()),
                     "images_per_s": (ra + rb) / 2}
        print(f"{name} {prec}: FD {out[prec]['fd']:.4f}, {out[prec]['images_per_s']:.1f} img/s",
              file=sys.stderr)
    out["fd_difference"] = out["bfloat16"]["fd"] - out["float32"]["fd"]
    rel = (feats["bfloat16"][0] - feats["float32"][0]).norm() / feats["float32"][0].norm()
    out["feature_relative_difference"] = float(rel)
    out["speedup"] = out["bfloat16"]["images_per_s"] / out["float32"]["images_per_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--skip-inception", action="store_true")
    p.add_argument("--out", default="benchmarks/results/fid_precision.json")
    args = p.parse_args()
    root = Path(args.data_root)
    a = mnist(root, "t10k-images-idx3-ubyte", args.images)
    b = mnist(root, "train-images-idx3-ubyte", args.images)
    out: dict = {"command": " ".join(["python", *sys.argv]),
                 "machine": {**cpu_info(), "torch_threads": torch.get_num_threads(),
                             "matmul_gflops": {str(t).removeprefix("torch."): matmul_rate(t)
                                               for t in (torch.float32, torch.bfloat16)}},
                 "images": len(a), "sets": "MNIST test vs the first training images (32×32)"}
    domain = DomainFeatures("mnist", data_root=root, progress=False)
    out["domain"] = compare("domain", domain, domain_bf16(domain), a, b)
    if not args.skip_inception:
        inception = InceptionFeatures()
        out["inception"] = compare("inception", inception, BF16Inception(inception), a, b)
        moved = abs(out["inception"]["fd_difference"])
        out["decision"] = ("bfloat16 features allowed (FID moved < 0.1)" if moved < 0.1 else
                           "evaluation keeps float32 (FID moved ≥ 0.1)")
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    with contextlib.suppress(KeyError):
        print(json.dumps({k: out[k] for k in ("domain", "inception", "decision")}, indent=1))


if __name__ == "__main__":
    main()
