"""raekit evaluate / table: a tiny digits run gets every field of metrics.json; Table 1 layout
with the paper's numbers beside ours."""

import csv
import json

import pytest

from raekit.cli import main


@pytest.fixture
def trained_run(tiny_cfg):
    from raekit.training.trainer import train

    return train(tiny_cfg(epochs=1))


def test_evaluate_writes_all_fields(trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAEKIT_CACHE", str(tmp_path / "cache"))
    argv = ["evaluate", str(trained_run), "--fid", "off", "--num-samples", "64",
            "--domain-epochs", "3", "--prd-runs", "1", "--quiet"]
    assert main(argv) == 0
    m = json.loads((trained_run / "metrics.json").read_text())
    assert m["num_images"] == 64 and m["dataset"] == "digits" and m["model"] == "rae-l2"
    assert m["skipped"]["fid"] == "turned off" and "domain_fd" in m["networks"]
    assert m["networks"]["domain_fd"]["accuracy"] > 0.5
    assert set(m["sets"]) == {"REC", "N", "GMM", "Interp"}
    for s in m["sets"].values():
        assert s["n"] == 64
        assert s["domain_fd"] >= 0 and s["domain_fd"] == s["domain_fd_details"]["distance"]
        assert 0 <= s["prd_domain"]["f_8"] <= 1 and 0 <= s["prd_domain"]["f_1_8"] <= 1
        assert 0 <= s["knn_domain"]["precision"] <= 1 and s["knn_domain"]["k"] == 3
    assert m["sets"]["N"]["density"] == "gaussian" and m["sets"]["GMM"]["density"] == "gmm"
    assert (trained_run / "densities" / "gmm.pt").is_file()
    curves = json.loads((trained_run / "prd.json").read_text())
    assert len(curves["domain"]["GMM"]["precision"]) == 1001
    assert (trained_run / "prd-domain.png").stat().st_size > 5000
    assert m["reference"]["features_from_cache"] == {"domain_fd": False}
    # a second evaluation takes the reference features from the cache, and scores the same
    assert main(argv) == 0
    m2 = json.loads((trained_run / "metrics.json").read_text())
    assert m2["reference"]["features_from_cache"] == {"domain_fd": True}
    assert m2["sets"]["REC"]["domain_fd"] == pytest.approx(m["sets"]["REC"]["domain_fd"], rel=1e-6)

    out = tmp_path / "t1"
    assert main(["table", str(trained_run), "--out", str(out)]) == 0
    md = (tmp_path / "t1.md").read_text()
    assert "| RAE-L2 |" in md and "digits REC" in md and "Domain FD" in md
    rows = list(csv.DictReader(open(tmp_path / "t1.csv")))
    assert [r["column"] for r in rows] == ["REC", "N", "GMM", "Interp"]
    assert rows[0]["paper_fid"] == ""  # no published numbers for digits


def test_table_puts_published_numbers_beside_ours(tmp_path):
    for model, fid in (("rae-l2", 9.5), ("vae", 20.0)):
        run = tmp_path / f"mnist-{model}"
        run.mkdir()
        sets = {c: {"fid": fid + i, "domain_fd": 0.1 * i, "prd_inception": {"f_8": .9, "f_1_8": .8}}
                for i, c in enumerate(["REC", "N", "GMM", "Interp"])}
        (run / "metrics.json").write_text(json.dumps(
            {"run": str(run), "model": model, "dataset": "mnist", "num_images": 10000,
             "sets": sets}))
    from raekit.evaluation.table import write_table

    md_path, csv_path, md = write_table([tmp_path / "mnist-vae", tmp_path / "mnist-rae-l2"],
                                        tmp_path / "table")
    lines = md.splitlines()
    vae = next(line for line in lines if line.startswith("| VAE |"))
    rae = next(line for line in lines if line.startswith("| RAE-L2 |"))
    assert lines.index(vae) < lines.index(rae)  # the paper's row order
    assert "9.50 (10.53*)" in rae and "11.50 (8.69)" in rae  # GMM 8.69 is a verified number
    assert "20.00 (18.26*)" in vae and "21.00 (19.21)" in vae
    rows = {(r["model"], r["column"]): r for r in csv.DictReader(open(csv_path))}
    assert float(rows[("rae-l2", "GMM")]["paper_fid"]) == 8.69
    assert float(rows[("rae-l2", "GMM")]["fid"]) == 11.5


def test_bad_input_is_one_line_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope"), "--fid", "off"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raekit: error:") and len(err.splitlines()) == 1
    assert main(["table", str(tmp_path)]) == 2
    assert "metrics.json" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--fid-weights", str(tmp_path / "w.pt")]) == 2


def test_reproduce_resumes_where_it_stopped(tiny_cfg, tmp_path, monkeypatch, capsys):
    from raekit.training.trainer import train

    monkeypatch.setenv("RAEKIT_CACHE", str(tmp_path / "cache"))
    cfg = tiny_cfg(epochs=1, name="digits-rae-l2-small")  # as if reproduce had trained it
    run = train(cfg)
    argv = ["reproduce", "--dataset", "digits", "--models", "rae-l2", "--scale", "small",
            "--out", str(run.parent), "--num-samples", "32", "--domain-epochs", "2",
            "--prd-runs", "1", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[rae-l2] trained:" in out and "[rae-l2] evaluating" in out
    assert (run / "metrics.json").is_file()
    assert (run.parent / "table-digits-small.md").is_file()
    assert main(argv) == 0  # nothing left to do: neither trained nor evaluated again
    assert "[rae-l2] evaluated:" in capsys.readouterr().out
