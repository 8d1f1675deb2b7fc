"""raekit against pythae 0.1.2: the same networks, the same split, the same budget, side by side.

Both libraries train the same model on the same images (a raekit config's dataset and split;
default the bundled 8×8 digits) with raekit's networks for that config (its ``width`` included)
handed to both (pythae gets them wrapped in its ``BaseEncoder``/``BaseDecoder``), the same
epochs, batch size and learning rate, each through its own training entry point, and the same
objective: raekit's loss is the reference's, mean_pixels (x − x̂)² + β·mean_j z_j² + λ·ΣW²;
pythae's sums the squared error over the P pixels and takes ½·embedding_weight·‖z‖², so by
default (``--weights matched``) pythae gets ``embedding_weight`` = 2βP/d and the decoder's weight
decay 2λP — P times raekit's loss, which Adam follows step for step. ``--weights nominal`` hands
pythae β and λ as they are (a latent penalty 2P/d times weaker against the reconstruction:
128× on MNIST). The model is the config's:

* ``rae-l2`` — pythae's ``RAE_L2`` through its ``CoupledOptimizerTrainer``, λ as the decoder's
  weight decay (raekit: λ·ΣW² in the loss, over the convolutions' kernels only; pythae's decay
  covers all of the decoder's parameters);
* ``rae-gp`` — pythae's ``RAE_GP`` through its ``BaseTrainer`` with ``reg_weight`` λ. Each
  library's own penalty: pythae's is ‖∂x̂/∂x‖² through encoder and decoder, summed over pixels;
  raekit's the reference's mean (∂‖D(z)‖²/∂z)², through the decoder only (λ is handed over as
  it is). The speed column compares each library's exact gradient penalty; the FD columns are
  not like for like.

Then, for each:

* the domain FD (raekit's digit classifier, :mod:`raekit.evaluation.domain`) of the held-out
  images' reconstructions and of ``--samples`` GMM samples (10 components, full covariances:
  raekit's ``gmm`` density and pythae's ``GaussianMixtureSampler``), both against the held-out
  images, computed by the same code for both libraries;
* seconds per epoch including validation (training loop only: no checkpoint writing, pictures
  or density fitting), timed by each library's own epoch callbacks.

For pythae a second row recomputes its batch-norm statistics once after training (the same
cumulative average raekit's ``precise_bn`` uses), to show how much of the gap that explains.

pythae runs in its own virtual environment (``--pythae-python``, or ``--install DIR`` creates one
with this process's torch version and pythae 0.1.2). The script re-runs itself there with
``--pythae-worker`` for each seed.

    python benchmarks/vs_pythae.py --install .pythae-venv [--seeds 0 1 2] [--config digits/rae-l2]
        [--set key=value ...] [--out benchmarks/results/vs_pythae.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PYTHAE = "pythae==0.1.2"


# ------------------------------------------------------------------------ the pythae worker


def recompute_batch_norm(encoder, decoder, x: torch.Tensor, batch: int) -> None:
    """Running statistics ← the average of the batch statistics over ``x`` (weights untouched)."""
    layers = [m for net in (encoder, decoder) for m in net.modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    encoder.eval(), decoder.eval()
    for m in layers:
        m.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            decoder(encoder(x[i:i + batch]).embedding)
    encoder.eval(), decoder.eval()


def pythae_worker(job: dict) -> dict:
    from pythae.data.datasets import BaseDataset
    from pythae.models import RAE_GP, RAE_L2, RAE_GP_Config, RAE_L2_Config
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.samplers import GaussianMixtureSampler, GaussianMixtureSamplerConfig
    from pythae.trainers import (
        BaseTrainer,
        BaseTrainerConfig,
        CoupledOptimizerTrainer,
        CoupledOptimizerTrainerConfig,
    )
    from pythae.trainers.training_callbacks import TrainingCallback

    sys.path.insert(0, str(ROOT / "src"))
    from raekit.models import nets
    from raekit.models.nets import build_networks

    # pythae gets the networks as its users would write them: PyTorch's own layers, not
    # raekit's fast-double-backward ones (the same parameters, buffers and values)
    nets.conv_transpose2d = torch.nn.functional.conv_transpose2d
    nets.BatchNorm2d, nets.ReLU = torch.nn.BatchNorm2d, torch.nn.ReLU

    torch.set_num_threads(job["threads"])
    data = np.load(job["data"])
    train, val = torch.from_numpy(data["train"]), torch.from_numpy(data["val"])
    torch.manual_seed(job["seed"])
    enc_net, dec_net = build_networks(job["network"], channels=train.shape[1],
                                      latent_dim=job["latent_dim"], width=job["width"])

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = enc_net

        def forward(self, x):
            return ModelOutput(embedding=self.net(x))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = dec_net

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    class EpochTimes(TrainingCallback):
        def __init__(self):
            self.times = []

        def on_epoch_begin(self, training_config, **kwargs):
            self._t = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.times.append(time.perf_counter() - self._t)

    gp = job["model"] == "rae-gp"
    Model, Config = (RAE_GP, RAE_GP_Config) if gp else (RAE_L2, RAE_L2_Config)
    config = Config(input_dim=tuple(train.shape[1:]), latent_dim=job["latent_dim"],
                    embedding_weight=job["embedding_weight"], reg_weight=job["reg_weight"])
    model = Model(config, encoder=Encoder(), decoder=Decoder())
    with tempfile.TemporaryDirectory() as out:
        common = dict(output_dir=out, num_epochs=job["epochs"], learning_rate=job["lr"],
                      per_device_train_batch_size=job["batch_size"],
                      per_device_eval_batch_size=job["batch_size"], seed=job["seed"],
                      no_cuda=True)
        if gp:
            Trainer, training = BaseTrainer, BaseTrainerConfig(**common)
        else:
            Trainer = CoupledOptimizerTrainer
            training = CoupledOptimizerTrainerConfig(
                **common, encoder_learning_rate=job["lr"], decoder_learning_rate=job["lr"],
                decoder_optimizer_params={"weight_decay": job["weight_decay"]})
        times = EpochTimes()
        trainer = Trainer(
            model, train_dataset=BaseDataset(train, labels=torch.zeros(len(train))),
            eval_dataset=BaseDataset(val, labels=torch.zeros(len(val))),
            training_config=training, callbacks=[times])
        trainer.train()
        model = trainer._best_model
    model.eval()

    def images(model) -> dict:
        with torch.no_grad():
            rec = torch.cat([model.decoder(model.encoder(val[i:i + 256]).embedding).reconstruction
                             for i in range(0, len(val), 256)])
        sampler = GaussianMixtureSampler(model, GaussianMixtureSamplerConfig(n_components=10))
        sampler.fit(train)
        torch.manual_seed(job["seed"])
        samples = sampler.sample(num_samples=job["samples"], batch_size=500)
        return {"reconstructions": rec.clamp(0, 1).numpy(), "samples": samples.clamp(0, 1).numpy()}

    result = {"running": images(model)}
    recompute_batch_norm(model.encoder, model.decoder, train, job["batch_size"])
    result["recomputed"] = images(model)
    np.savez(job["result"], **{f"{k}_{n}": v for k, d in result.items() for n, v in d.items()},
             epoch_seconds=np.array(times.times))
    return {}


# --------------------------------------------------------------------------- the main process


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def install(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch_pin = torch.__version__.split("+")[0]
    import torchvision
    pins = [f"torch=={torch_pin}", f"torchvision=={torchvision.__version__.split('+')[0]}",
            PYTHAE, "pyyaml"]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
    return python


def domain_fd(features, images: np.ndarray, reference: torch.Tensor) -> float:
    from raekit.evaluation.frechet import frechet_distance_of_features

    return float(frechet_distance_of_features(features(torch.from_numpy(images)).numpy(),
                                              reference.numpy()))


class EpochTimer:
    """Lightning callback: seconds from each training epoch's start to its end (validation and
    raekit's batch-norm recomputation included)."""

    def __new__(cls):
        import lightning.pytorch as pl

        class _Timer(pl.Callback):
            times: list[float] = []

            def on_train_epoch_start(self, trainer, pl_module):
                self._t = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module):
                self.times.append(time.perf_counter() - self._t)

        timer = _Timer()
        timer.times = []
        return timer


def run_raekit(cfg, features, reference, n_samples: int, seed: int) -> dict:
    import raekit
    from raekit.data import first_images
    from raekit.sampling import reconstruct, sample_images

    timer = EpochTimer()
    run_dir = raekit.train(cfg, callbacks=[timer])
    run = raekit.load_run(run_dir)
    model = run.load_model()
    val = first_images(run.splits.val, len(run.splits.val))
    rec = reconstruct(model, val).clamp(0, 1).numpy()
    density = run.density("gmm", model)
    samples = sample_images(model, density, n_samples, seed=seed).clamp(0, 1).numpy()
    return {"rec_fd": domain_fd(features, rec, reference),
            "gmm_fd": domain_fd(features, samples, reference),
            "epoch_seconds": timer.times}


def network_for_size(size: int) -> str:
    from raekit.models.nets import network_for_size

    return network_for_size(size)


def pythae_weights(cfg, image_shape: tuple[int, ...], how: str) -> dict:
    """pythae's embedding_weight, RAE_GP reg_weight and RAE_L2 decoder weight decay for raekit's
    β and λ: ``matched`` (the same objective, scaled by the pixel count P) or ``nominal``."""
    pixels = int(np.prod(image_shape))
    if how == "nominal":
        return {"embedding_weight": cfg.beta, "reg_weight": cfg.reg_weight,
                "weight_decay": cfg.reg_weight}
    return {"embedding_weight": 2 * cfg.beta * pixels / cfg.latent_dim,
            "reg_weight": cfg.reg_weight, "weight_decay": 2 * cfg.reg_weight * pixels}


def run_pythae(python: Path, cfg, data: Path, features, reference, n_samples: int, seed: int,
               work: Path, weights: dict) -> dict:
    result = work / f"pythae-{seed}.npz"
    network = cfg.network or network_for_size(int(np.load(data)["train"].shape[-1]))
    job = {"data": str(data), "result": str(result), "seed": seed, "network": network,
           "model": cfg.model, "width": cfg.width, "latent_dim": cfg.latent_dim, **weights,
           "lr": cfg.lr, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
           "samples": n_samples, "threads": torch.get_num_threads()}
    log = work / f"pythae-{seed}.log"
    with open(log, "w") as f:
        done = subprocess.run([str(python), __file__, "--pythae-worker", json.dumps(job)],
                              stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"the pythae worker failed:\n{log.read_text()[-3000:]}")
    r = np.load(result)
    return {f"{which}": {"rec_fd": domain_fd(features, r[f"{which}_reconstructions"], reference),
                         "gmm_fd": domain_fd(features, r[f"{which}_samples"], reference)}
            for which in ("running", "recomputed")} | {
        "epoch_seconds": r["epoch_seconds"].tolist()}


def summarise(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 3),
            "sd": round(statistics.stdev(values), 3) if len(values) > 1 else None,
            "values": [round(v, 3) for v in values]}


def table_of(rows: list[dict], pick=lambda r: r) -> dict:
    return {"rec_fd": summarise([pick(r)["rec_fd"] for r in rows]),
            "gmm_fd": summarise([pick(r)["gmm_fd"] for r in rows]),
            "epoch_seconds": summarise([statistics.median(r["epoch_seconds"][1:]
                                                          or r["epoch_seconds"]) for r in rows])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pythae-worker", help=argparse.SUPPRESS)
    p.add_argument("--pythae-python", type=Path, help="a Python with pythae 0.1.2 installed")
    p.add_argument("--install", type=Path, help="create/update this venv with pythae 0.1.2")
    p.add_argument("--config", default="digits/rae-l2", help="raekit preset or YAML file")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="raekit config overrides (the shared budget keys reach pythae too)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=1000, help="GMM samples per run")
    p.add_argument("--raekit-only", action="store_true",
                   help="skip pythae (to tune raekit's side; the JSON then has no comparison)")
    p.add_argument("--domain", help="the domain classifier's dataset (digits or mnist; default: "
                   "the config's), for images given as an npz file")
    p.add_argument("--weights", choices=("matched", "nominal"), default="matched",
                   help="pythae's β and λ: raekit's objective in pythae's normalisation "
                   "(default), or the same numbers")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/vs_pythae.json")
    args = p.parse_args()
    if args.pythae_worker:
        pythae_worker(json.loads(args.pythae_worker))
        return
    if not (args.pythae_python or args.install or args.raekit_only):
        p.error("give --pythae-python PYTHON or --install VENV_DIR")
    python = None if args.raekit_only else args.pythae_python or install(args.install)

    from raekit.data import first_images, load_splits
    from raekit.evaluation.domain import DomainFeatures
    from raekit.settings import parse_overrides
    from raekit.training.config import build_config

    overrides = parse_overrides(args.set)
    rows: dict[str, list[dict]] = {"raekit": [], "pythae": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = build_config(args.config, {**overrides, "out": str(work)})
        if base.model not in ("rae-l2", "rae-gp"):
            sys.exit(f"vs_pythae compares rae-l2 and rae-gp, not {base.model!r}")
        splits = load_splits(base)
        train = first_images(splits.train, len(splits.train)).float().numpy()
        val = first_images(splits.val, len(splits.val)).float()
        data = work / "data.npz"
        np.savez(data, train=train, val=val.numpy())
        features = DomainFeatures(args.domain or base.dataset, progress=False)
        reference = features(val)
        weights = pythae_weights(base, train.shape[1:], args.weights)
        for seed in args.seeds:
            cfg = build_config(args.config, {**overrides, "out": str(work), "seed": seed,
                                             "name": f"raekit-{seed}", "progress": False})
            rows["raekit"].append(run_raekit(cfg, features, reference, args.samples, seed))
            line = (f"seed {seed}: raekit {rows['raekit'][-1]['rec_fd']:.2f}/"
                    f"{rows['raekit'][-1]['gmm_fd']:.2f}")
            if python:
                rows["pythae"].append(run_pythae(python, cfg, data, features, reference,
                                                 args.samples, seed, work, weights))
                line += (f", pythae {rows['pythae'][-1]['running']['rec_fd']:.2f}/"
                         f"{rows['pythae'][-1]['running']['gmm_fd']:.2f}")
            print(line, flush=True)
    raekit_row = table_of(rows["raekit"])
    report = {
        "machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "config": args.config, "overrides": overrides,
        "budget": {**{k: getattr(base, k) for k in ("dataset", "model", "width", "latent_dim",
                                                    "epochs", "batch_size", "lr", "beta",
                                                    "reg_weight", "precision")},
                   "network": base.network or network_for_size(int(train.shape[-1]))},
        "held_out_images": int(len(val)), "gmm_samples": args.samples, "seeds": args.seeds,
        "raekit": raekit_row, "date": time.strftime("%Y-%m-%d"),
    }
    if python:
        pythae_row = table_of(rows["pythae"], lambda r: r["running"])
        pythae_bn = table_of(rows["pythae"], lambda r: r["recomputed"])
        pythae_bn.pop("epoch_seconds")
        report |= {"pythae_weights": {"how": args.weights, **weights}, "pythae": pythae_row,
                   "pythae_bn_recomputed": pythae_bn,
                   "speed_ratio_pythae_over_raekit": round(
                       pythae_row["epoch_seconds"]["mean"] / raekit_row["epoch_seconds"]["mean"],
                       3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(json.dumps({k: report[k] for k in ("raekit", "pythae", "pythae_bn_recomputed",
                                             "speed_ratio_pythae_over_raekit") if k in report},
                     indent=2))

if __name__ == "__main__":
    main()
