"""Training image models: the run's settings (``config``), the Lightning loop (``trainer``) and
the run directory it writes (``run``). ``train`` is imported on first use, so that reading a
finished run does not load Lightning."""

from .config import TrainConfig, build_config
from .run import Run, load_run

__all__ = ["Run", "TrainConfig", "build_config", "load_run", "train"]


def __getattr__(name: str):
    if name == "train":
        from .trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
