"""Each script under examples/ runs as written (at a tiny budget) and prints its result."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script,args,expect", [
    ("train_and_sample.py", ["--epochs", "2"], "held-out log-likelihood of the GMM"),
    ("custom_network.py", ["--epochs", "2"], "trained: best epoch"),
    ("compare_densities.py", ["--epochs", "2", "--stage2-epochs", "2"], "two-stage"),
    ("evaluate.py", ["--epochs", "2", "--num-samples", "64", "--domain-epochs", "3"], "Interp"),
])
def test_example_runs(script, args, expect, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAEKIT_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, str(EXAMPLES / script), *args, "--out",
                        str(tmp_path / "runs")], capture_output=True, text=True, env=env,
                       timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert expect in r.stdout
