"""``raekit grammar``: train, sample, encode and bo from the command line; bad input gives a
one-line error (exit status 2)."""

import json

import pytest

pytest.importorskip("nltk")
pytest.importorskip("botorch")

from raekit.cli import grammar as gcli  # noqa: E402
from raekit.cli import main  # noqa: E402
from raekit.grammar.config import DATASETS, scales_of  # noqa: E402
from raekit.grammar.models import MODELS, one_thread  # noqa: E402


def test_cli_choices_match_the_registries():
    assert gcli.MODEL_NAMES == tuple(sorted(MODELS))
    assert all(scales_of(d) == ["paper", "small"] for d in DATASETS)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from test_grammar_models import random_expressions

    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "eq.txt").write_text("\n".join(random_expressions(400, seed=3, max_rules=8)) + "\n")
    with one_thread():
        rc = main(["grammar", "train", "data=expressions", "model=gvae",
                   "--data-path", str(tmp / "eq.txt"), "epochs=1", "holdout=50",
                   "val_size=50", "hidden=16", "accelerator=cpu",
                   f"out={tmp}", "name=run", "--quiet"])
    assert rc == 0
    return tmp / "run"


def test_train_writes_a_run(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["train"] == 300 and metrics["skipped"] == 0
    for key in ("reconstruction_accuracy", "valid_prior", "valid_gaussian", "valid_gmm"):
        assert 0.0 <= metrics[key] <= 1.0
    assert (tiny_run / "model.pt").is_file() and (tiny_run / "codes.pt").is_file()


def test_sample_and_encode(tiny_run, tmp_path, capsys):
    out = tmp_path / "samples.json"
    with one_thread():
        assert main(["grammar", "sample", str(tiny_run), "--density", "gaussian", "-n", "8",
                     "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert len(res["strings"]) == 8 and 0 <= res["valid_share"] <= 1
    assert main(["grammar", "encode", str(tiny_run), "sin(x)+x*2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("sin(x)+x*2") and len(line.split()) == 1 + 25


def test_bo_command(tiny_run, tmp_path, capsys):
    out = tmp_path / "bo.json"
    with one_thread():
        assert main(["grammar", "bo", str(tiny_run), "--rounds", "1", "--batch", "2",
                     "--decodes", "3", "--n-train", "60", "--output", str(out)]) == 0
    # stderr is not a terminal here: no progress bars redrawn into it
    err = capsys.readouterr().err
    assert "\r" not in err and "BO rounds" not in err and "it/s" not in err
    res = json.loads(out.read_text())
    assert res["runs"][0]["points"] == 2 and 0 <= res["valid_share"] <= 1
    assert all(b["score"] <= 0 for b in res["best"])  # −log(1 + MSE) ≤ 0
    assert res["settings"]["acquisition"] == "reference" and res["strings"] == 60
    # every setting as key=value; two seeds reported as get_final_results.py does
    with one_thread():
        assert main(["grammar", "bo", str(tiny_run), "rounds=1", "batch=2", "decodes=2",
                     "pool=40", "gp_epochs=3", "grid=100", "seeds=1,2", "inducing=8",
                     "features=training",
                     "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["settings"]["seeds"] == [1, 2] and res["settings"]["gp_epochs"] == 3
    assert res["settings"]["features"] == "training" and res["strings"] == 40
    assert [r["seed"] for r in res["runs"]] == [1, 2] and len(res["best"]) <= 2
    assert res["best_score"] == pytest.approx(sum(r["best_score"] for r in res["runs"]) / 2)


def test_bad_input_is_one_line(tiny_run, tmp_path, capsys):
    assert main(["grammar", "encode", str(tiny_run), "sin(x"]) == 2
    err = capsys.readouterr().err
    assert (err.startswith("raekit: error:") and "sin(x" in err
            and len(err.strip().splitlines()) == 1)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["grammar", "train", "--data-path", str(empty), f"out={tmp_path}"]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["grammar", "train", f"data_path={empty}", "epochz=3"]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert main(["grammar", "train", f"data_path={empty}", "model=gvae", "beta=0.1"]) == 2
    assert "does not use beta" in capsys.readouterr().err
    assert main(["grammar", "sample", str(tmp_path / "nope")]) == 2
    assert main(["grammar", "bo", str(tiny_run), "gp_epochz=3"]) == 2
    assert "did you mean 'gp_epochs'" in capsys.readouterr().err
    assert main(["grammar", "bo", str(tiny_run), "acquisition=ucb"]) == 2
    assert "acquisition must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse's own error: usage and one error line
        main(["grammar", "bo", str(tiny_run), "--rounds", "0"])
    assert e.value.code == 2 and "must be a positive integer" in capsys.readouterr().err
