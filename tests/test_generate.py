"""Generation: batched encoding, sampling through a density beats the prior, and the
fit-density / sample / reconstruct / interpolate commands (files written, bad input refused,
nothing overwritten)."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from raekit.cli import main
from raekit.densities import DENSITIES, load_density, make_density, save_density
from raekit.errors import RaekitError
from raekit.evaluation.frechet import frechet_distance_of_features
from raekit.files import load_torch, save_torch
from raekit.models import BaseAutoencoder
from raekit.sampling import decode, encode_dataset, sample_images
from raekit.training.run import load_run

SCALE, PAD = 8, 2  # raekit.pictures draws 8×8 digits 8× larger, cells 2 px apart


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny networks gain nothing from threads, and on a loaded 2-core machine they cost 5-10×.
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- encoding


def bn_model():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3))
    return BaseAutoencoder(enc, nn.Linear(3, 4)).train()


@pytest.mark.parametrize("as_tuples", [True, False])
def test_encode_dataset_batches_without_grad_in_eval_mode_and_restores_training(as_tuples):
    model = bn_model()
    x = torch.randn(50, 2, 2)
    ds = TensorDataset(x, torch.zeros(50)) if as_tuples else x  # (x, y) tuples or bare tensors
    stats = model.encoder[2].running_mean.clone()
    z = encode_dataset(model, DataLoader(ds, batch_size=16), progress=False)
    assert model.training  # restored
    assert torch.equal(model.encoder[2].running_mean, stats)  # eval mode: BN statistics untouched
    assert z.shape == (50, 3) and not z.requires_grad and z.device.type == "cpu"
    with torch.no_grad():
        torch.testing.assert_close(z, model.eval().encode(x))
    # a Dataset is batched for you
    torch.testing.assert_close(encode_dataset(model, TensorDataset(x), progress=False), z)


def test_encode_dataset_refuses_an_empty_loader_and_a_model_without_encode():
    with pytest.raises(RaekitError, match="no batches"):
        encode_dataset(bn_model(), DataLoader(TensorDataset(torch.zeros(0, 2, 2))), progress=False)
    with pytest.raises(RaekitError, match="no encode"):
        encode_dataset(nn.Linear(2, 2), [torch.zeros(1, 2)], progress=False)


def test_python_api_round_trip_on_a_users_own_networks():
    model = bn_model()
    z = encode_dataset(model, [torch.randn(30, 2, 2), torch.randn(30, 2, 2)], progress=False)
    density = make_density("gaussian").fit(z)
    images = sample_images(model, density, 7, seed=0)
    torch.testing.assert_close(images, decode(model, density.sample(7, seed=0)))
    assert images.shape == (7, 4) and model.training


# ----------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_thread):
    """An RAE trained briefly on the bundled digits (small network)."""
    from raekit.training.config import build_config
    from raekit.training.trainer import train

    out = tmp_path_factory.mktemp("runs")
    cfg = build_config(None, dict(dataset="digits", model="rae", width=4, epochs=8, batch_size=50,
                                  progress=False, out=str(out), name="rae", download=False))
    return train(cfg)


@pytest.fixture
def fresh_run(run_dir, tmp_path):
    """A copy of the trained run without stored densities or pictures."""
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("densities", "*.png", "*.npz"))
    return dst


def test_gmm_samples_are_closer_to_held_out_digits_than_prior_samples(fresh_run):
    paths = {}
    for name in ("gmm", "prior"):
        paths[name] = fresh_run / f"{name}.npz"
        assert main(["sample", str(fresh_run), "-n", "1000", "--density", name, "--seed", "1",
                     "--npz", str(paths[name]), "--device", "cpu"]) == 0
    held_out = torch.stack([load_run(fresh_run).splits.val[i] for i in range(299)])
    real = held_out.flatten(1).double().numpy()  # pixel space, 64-D
    fd = {}
    for name, path in paths.items():
        with np.load(path, allow_pickle=False) as f:
            fd[name] = frechet_distance_of_features(f["images"].reshape(1000, -1), real)
    assert fd["gmm"] < 0.8 * fd["prior"], fd  # measured ≈ 4.5 vs 6.7


def test_fit_density_stores_a_density_and_never_replaces_it_silently(fresh_run, capsys):
    assert main(["fit-density", str(fresh_run), "--density", "gmm", "--device", "cpu"]) == 0
    assert "held-out log-likelihood" in capsys.readouterr().out
    path = fresh_run / "densities" / "gmm.pt"
    density, meta = load_density(path, return_meta=True)
    assert density.n_features_in_ == 8 and density.n_components == 10
    assert meta["split"] == "train" and meta["n_codes"] == len(load_run(fresh_run).splits.train)
    assert np.isfinite(meta["val_loglik"])
    before = path.read_bytes()
    assert main(["fit-density", str(fresh_run), "--density", "gmm"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["fit-density", str(fresh_run), "--density", "gmm", "--force"]) == 0
    assert load_density(path).n_features_in_ == 8


def test_sample_fits_a_missing_density_then_reuses_it(fresh_run, capsys):
    npz = fresh_run / "s.npz"
    assert main(["sample", str(fresh_run), "-n", "20", "--density", "kde", "--npz", str(npz),
                 "--seed", "3", "--per-row", "5"]) == 0
    assert "fitting it first" in capsys.readouterr().out  # documented: auto-fit, then stored
    density = load_density(fresh_run / "densities" / "kde.pt")
    with np.load(npz, allow_pickle=False) as f:
        images, z = f["images"], f["z"]
        assert str(f["density"]) == "kde" and int(f["seed"]) == 3
    assert images.shape == (20, 1, 8, 8) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    # the stored density with the same seed gives the same codes; decoding them, the same images
    np.testing.assert_array_equal(z, density.sample(20, seed=3).numpy())
    model = load_run(fresh_run).load_model()
    np.testing.assert_allclose(images, decode(model, torch.from_numpy(z)).numpy(), atol=1e-6)
    # the picture: 4 rows of 5 real-pixel cells, each 8× nearest-neighbour upscaled
    png = Image.open(fresh_run / "samples-kde-seed3.png").convert("L")
    cell = 8 * SCALE + PAD
    assert png.height == 4 * cell + PAD
    label_w = png.width - 5 * cell - PAD
    a = np.asarray(png)[PAD:PAD + 8 * SCALE, label_w + PAD:label_w + PAD + 8 * SCALE]
    np.testing.assert_array_equal(a, np.kron(np.round(images[0, 0] * 255), np.ones((SCALE, SCALE))))
    assert main(["sample", str(fresh_run), "-n", "4", "--density", "kde"]) == 0
    assert "fitting" not in capsys.readouterr().out


def test_reconstruct_and_interpolate_write_labelled_grids_of_real_pixels(fresh_run):
    assert main(["reconstruct", str(fresh_run), "-n", "12", "--per-row", "6"]) == 0
    png = np.asarray(Image.open(fresh_run / "reconstructions-val.png").convert("L"))
    cell = 8 * SCALE + PAD
    assert png.shape[0] == 4 * cell + PAD  # 2 rows of originals, each over its reconstructions
    label_w = png.shape[1] - 6 * cell - PAD
    first = load_run(fresh_run).splits.val[0][0].numpy()  # the first held-out image, (8, 8)
    a = png[PAD:PAD + 8 * SCALE, label_w + PAD:label_w + PAD + 8 * SCALE]
    np.testing.assert_array_equal(a, np.kron(np.round(first * 255), np.ones((SCALE, SCALE))))
    assert main(["interpolate", str(fresh_run), "--pairs", "3", "--steps", "6"]) == 0
    png = np.asarray(Image.open(fresh_run / "interpolations-val.png").convert("L")).astype(int)
    assert png.shape[0] == 3 * 3 * cell + PAD  # 3 pairs × (linear, slerp, norm-rescaled)
    label_w = png.shape[1] - 8 * cell - PAD  # 6 decoded steps between the 2 originals

    def cell_at(row, col):
        y, x = PAD + row * cell, label_w + PAD + col * cell
        return png[y:y + 8 * SCALE, x:x + 8 * SCALE]

    for pair in range(3):
        rows = [3 * pair + k for k in range(3)]
        for col in (0, 1, 6, 7):  # originals and the decoded endpoints: the same in every strip
            for r in rows[1:]:
                np.testing.assert_array_equal(cell_at(r, col), cell_at(rows[0], col))
        # strips differ inside (slerp leaves the straight line)
        assert np.abs(cell_at(rows[0], 3) - cell_at(rows[1], 3)).sum() > 0


def pictures(run):
    return {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_bad_input_is_refused_and_nothing_is_overwritten(fresh_run, tmp_path, capsys):
    assert main(["fit-density", str(fresh_run), "--density", "gmm"]) == 0
    npz = tmp_path / "keep.npz"
    npz.write_bytes(b"keep")
    before = pictures(fresh_run)
    for n in ("0", "-5", "x"):
        with pytest.raises(SystemExit) as e:
            main(["sample", str(fresh_run), "-n", n])
        assert e.value.code == 2
    assert main(["sample", str(fresh_run), "-n", "4", "--npz", str(npz)]) == 2
    assert "already exists" in capsys.readouterr().err and npz.read_bytes() == b"keep"
    # a density from an incompatible version, and one fitted on codes of another size
    blob = load_torch(fresh_run / "densities" / "gmm.pt")
    blob["raekit"]["density_format"] = 99
    save_torch(blob, fresh_run / "densities" / "gaussian.pt")
    assert main(["sample", str(fresh_run), "--density", "gaussian"]) == 2
    assert "incompatible raekit version" in capsys.readouterr().err
    save_density(make_density("prior").fit(np.zeros((3, 5))), fresh_run / "densities" / "prior.pt")
    assert main(["sample", str(fresh_run), "--density", "prior"]) == 2
    assert "5-D codes but the model's codes are 8-D" in capsys.readouterr().err
    after = pictures(fresh_run)
    assert {k: v for k, v in after.items() if k not in ("gaussian.pt", "prior.pt")} == before
    # a run directory with a missing file
    (fresh_run / "model.pt").unlink()
    for cmd in (["fit-density", "--density", "dpgmm"], ["sample"], ["reconstruct"],
                ["interpolate"]):
        assert main([cmd[0], str(fresh_run), *cmd[1:]]) == 2
        assert "model.pt is missing" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert not list(fresh_run.glob("*.png")) and not (fresh_run / "densities" / "dpgmm.pt").exists()


def test_a_density_fitted_for_another_model_is_refused(fresh_run, capsys):
    assert main(["fit-density", str(fresh_run), "--density", "gaussian"]) == 0
    blob = load_torch(fresh_run / "model.pt")  # "retrain": same shapes, other weights
    blob["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v
                          for k, v in blob["state_dict"].items()}
    save_torch(blob, fresh_run / "model.pt")
    assert main(["sample", str(fresh_run), "--density", "gaussian"]) == 2
    assert "another model.pt" in capsys.readouterr().err


def test_every_density_is_a_cli_choice():
    from raekit.cli import build_parser

    args = build_parser().parse_args(["sample", "RUN", "--density", "two-stage"])
    assert args.density == "two-stage" and set(DENSITIES) >= {"gaussian", "gmm", "dpgmm", "prior",
                                                               "kde", "two-stage"}
