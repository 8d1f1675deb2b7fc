"""The run's metrics log: ``RUN/logs/metrics.csv``, and the optional experiment trackers.

``metrics.csv`` is always written (the training curves and ``--resume`` read it); ``logger=
tensorboard|wandb|mlflow`` adds one of Lightning's loggers beside it, in the run directory and
offline (no network), which also receives the reconstructions and samples of each epoch.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger

from ..errors import RaekitError
from ..files import save_text


class MetricsFile:
    """``metrics.csv``, kept in memory and rewritten whole, atomically, at each save (so a killed
    run never leaves a half-written row). A resumed run starts from the rows of the steps its
    checkpoint had finished; the steps after it are run, and logged, again."""

    def __init__(self, path: Path, keep_through_step: int | None = None):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if keep_through_step is not None and path.is_file():
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if r.get("step") not in (None, "")
                             and int(r["step"]) <= keep_through_step]
        self.pending: list[dict[str, Any]] = []

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        row = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
        row["step"] = len(self.rows) + len(self.pending) if step is None else step
        self.pending.append(row)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """The run's settings are in config.yaml."""

    def save(self) -> None:
        if not self.pending and self.path.is_file():
            return
        self.rows += self.pending
        self.pending = []
        keys = sorted(set().union(*self.rows)) if self.rows else ["step"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        save_text(buf.getvalue(), self.path)


class RunCSVLogger(CSVLogger):
    """Lightning's CSV logger writing ``RUN/logs/metrics.csv`` through :class:`MetricsFile`."""

    def __init__(self, run_dir: Path, keep_through_step: int | None = None):
        super().__init__(run_dir, name="logs", version="", flush_logs_every_n_steps=10**9)
        self.keep_through_step = keep_through_step

    @property
    def experiment(self) -> MetricsFile:
        if self._experiment is None:
            self._experiment = MetricsFile(Path(self.log_dir) / "metrics.csv",
                                           self.keep_through_step)
        return self._experiment


#: ``logger=`` choices beside the CSV log: (the Lightning logger's module, the pip extra)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
            "mlflow": ("mlflow", "mlflow")}


def make_loggers(name: str, run_dir: Path, *, run_name: str,
                 keep_through_step: int | None = None) -> list:
    """The CSV log, and the tracker ``name`` (tensorboard, wandb, mlflow) beside it, writing
    into the run directory without a network: TensorBoard event files in ``logs/tensorboard``,
    an offline W&B run in ``wandb/``, a local MLflow store ``mlflow.db`` with its artifacts
    in ``mlruns/``."""
    from importlib.util import find_spec

    loggers: list = [RunCSVLogger(run_dir, keep_through_step)]
    if name == "csv":
        return loggers
    if name not in TRACKERS:
        raise RaekitError(f"logger must be csv, {', '.join(TRACKERS)}; got {name!r}")
    module, extra = TRACKERS[name]
    if find_spec(module) is None:
        raise RaekitError(f"logger={name} needs the {module} package: pip install "
                          f"'raekit[{extra}]'")
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="logs", version="tensorboard",
                                         default_hp_metric=False))
    elif name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(name=run_name, save_dir=str(run_dir), offline=True,
                                   project="raekit"))
    else:
        from lightning.pytorch.loggers import MLFlowLogger

        store = (run_dir / "mlflow.db").resolve()
        loggers.append(MLFlowLogger(experiment_name="raekit", run_name=run_name,
                                    tracking_uri=f"sqlite:///{store}",
                                    artifact_location=(run_dir / "mlruns").resolve().as_uri()))
    return loggers


def log_image(logger, tag: str, image: np.ndarray, step: int) -> bool:
    """Send an RGB picture (H, W, 3) uint8 to a tracker that takes images; False if it does not."""
    from lightning.pytorch import loggers as pl_loggers

    if isinstance(logger, pl_loggers.TensorBoardLogger):
        logger.experiment.add_image(tag, image, step, dataformats="HWC")
    elif isinstance(logger, pl_loggers.WandbLogger):
        logger.log_image(key=tag, images=[image], step=step)
    elif isinstance(logger, pl_loggers.MLFlowLogger):
        logger.experiment.log_image(logger.run_id, image, f"{tag}/step{step:07d}.png")
    else:
        return False
    return True
