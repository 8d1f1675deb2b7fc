import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def tiny_cfg(tmp_path):
    """A TrainConfig for a quick RAE-L2 run on the bundled digits."""
    from raekit.training.config import build_config

    def make(**overrides):
        base = dict(dataset="digits", model="rae-l2", width=4, epochs=2, batch_size=50,
                    progress=False, out=str(tmp_path / "runs"), download=False)
        base.update(overrides)
        return build_config(None, base)

    return make


@pytest.fixture
def one_thread():
    """One torch thread: tiny networks gain nothing from threads, and on a loaded 2-core machine
    they cost up to 10×."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
