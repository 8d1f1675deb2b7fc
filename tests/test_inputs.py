"""Bad input gives one clear line and a non-zero exit, never a traceback from a library."""

import gzip
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from raekit.cli import main
from raekit.data import load_splits
from raekit.errors import RaekitError
from raekit.files import load_torch, save_torch
from raekit.training.config import build_config


def run_cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("args,message", [
    (["dataset=nope"], "unknown dataset 'nope'"),
    (["model=vea"], "unknown model 'vea'"),
    (["widht=2"], "unknown config key 'widht' (did you mean 'width'?)"),
    (["beta=-1"], "beta must be ≥ 0, got -1.0"),
    (["width=0"], "width must be a positive integer, got 0"),
    (["epochs=two"], "epochs must be int, got 'two'"),
    (["lr=0"], "lr must be > 0"),
    (["val_size=5000"], "has 1797 image(s): holding out val_size=5000.0 (5000 image(s)) leaves 0 "
                        "for training"),
    (["val_size=1790"], "leaves 7 for training; raekit needs at least 10 training images"),
    (["epochs=1", "nokey"], "expected key=value, got 'nokey'"),
    (["no/such/preset"], "is neither a file nor a shipped preset"),
])
def test_bad_config_values_are_one_line_errors(capsys, tmp_path, args, message):
    code, err = run_cli(capsys, "train", *args, f"out={tmp_path}", "progress=false")
    assert code == 2
    assert err.startswith("raekit: error: ") and message in err and "\n" not in err


def test_missing_standard_data_says_what_to_put_where(capsys, tmp_path):
    for dataset, what in (("mnist", "train-images-idx3-ubyte.gz"), ("cifar10", "test_batch.bin"),
                          ("celeba", "000001.jpg")):
        code, err = run_cli(capsys, "train", f"dataset={dataset}", f"data_root={tmp_path}",
                            "download=false", f"out={tmp_path}")
        assert code == 2 and what in err and str(tmp_path) in err


def test_corrupt_mnist_file_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        with gzip.open(raw / f"{stem}.gz", "wb") as f:
            f.write(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"))  # truncated header
    with pytest.raises(RaekitError, match="not a valid idx file"):
        load_splits(build_config(None, {"dataset": "mnist", "data_root": str(tmp_path)}))


def test_mnist_idx_files_are_padded_to_32(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in (("train-images-idx3-ubyte", 30), ("t10k-images-idx3-ubyte", 5)):
        header = b"\x00\x00\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28))
        with gzip.open(raw / f"{stem}.gz", "wb") as f:
            f.write(header + np.full((n, 28, 28), 255, np.uint8).tobytes())
    s = load_splits(build_config(None, {"dataset": "mnist", "data_root": str(tmp_path),
                                        "val_size": 10}))
    assert (len(s.train), len(s.val), len(s.test)) == (20, 10, 5)
    x = s.train[0]
    assert x.shape == (1, 32, 32) and x[0, 2:30, 2:30].min() == 1 and x[0, :2].max() == 0


def test_validation_split_does_not_overlap_training():
    s = load_splits(build_config(None, {"dataset": "digits"}))
    train_idx, val_idx = set(s.train.indices), set(s.val.indices)
    assert not train_idx & val_idx and len(train_idx | val_idx) == 1797 and len(val_idx) == 299


def test_npz_images_of_the_wrong_size_and_their_resize(tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.random.randint(0, 255, (40, 28, 28), dtype=np.uint8))
    code, err = run_cli(capsys, "train", "dataset=npz", f"data_root={path}", f"out={tmp_path}")
    assert code == 2 and "no built-in network for 28×28 images" in err
    s = load_splits(build_config(None, {"dataset": "npz", "data_root": str(path),
                                        "image_size": 32}))
    assert s.shape == (1, 32, 32) and 0 <= s.train[0].min() and s.train[0].max() <= 1
    np.savez(tmp_path / "o.npz", x=np.array([object()], dtype=object))
    with pytest.raises(RaekitError, match="not a readable .npz"):
        load_splits(build_config(None, {"dataset": "npz", "data_root": str(tmp_path / "o.npz")}))


def test_image_folder_dataset_and_a_corrupt_image(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((40, 50, 3), 20 * i, np.uint8)).save(folder / f"{i}.png")
    s = load_splits(build_config(None, {"dataset": "folder", "data_root": str(folder),
                                        "image_size": 32, "val_size": 2}))
    assert s.shape == (3, 32, 32) and len(s.train) == 10
    assert torch.allclose(s.train[0], torch.full((3, 32, 32), s.train[0][0, 0, 0].item()))
    (folder / "0.png").write_bytes(b"not a png")
    with pytest.raises(RaekitError, match="cannot read image .*0.png"):
        load_splits(build_config(None, {"dataset": "folder", "data_root": str(folder)}))


class Evil:
    def __reduce__(self):
        return (open, ("/tmp/raekit-evil-was-here", "w"))


def test_checkpoint_with_pickled_code_is_refused_not_run(tmp_path):
    target = __import__("pathlib").Path("/tmp/raekit-evil-was-here")
    target.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(RaekitError, match="pickled objects that could run code; refusing"):
        load_torch(path)
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f, protocol=4)
    with pytest.raises(RaekitError, match="pickled objects that could run code; refusing"):
        load_torch(path)
    assert not target.exists()


def test_corrupt_or_truncated_checkpoint(tmp_path, capsys):
    path = tmp_path / "m.pt"
    save_torch({"w": torch.randn(100, 100)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(RaekitError, match="corrupt or truncated"):
        load_torch(path)
    # a run whose last checkpoint is garbage cannot be resumed, and says so
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: rae-l2\ndataset: digits\nprogress: false\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"garbage")
    code, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 2 and "corrupt" in err


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a.pt"
    save_torch({"v": torch.ones(1)}, path)
    # the pickling error's type differs between Python versions (AttributeError, PicklingError)
    with pytest.raises(Exception):  # noqa: B017
        save_torch({"v": lambda: 0}, path)  # a lambda cannot be pickled: the write fails
    assert load_torch(path)["v"].item() == 1 and [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_a_dataset_too_small_for_its_split_is_refused_with_the_sizes(tmp_path, capsys):
    path = tmp_path / "three.npz"
    np.savez(path, x=np.zeros((3, 8, 8), np.uint8))
    code, err = run_cli(capsys, "train", "dataset=npz", f"data_root={path}", f"out={tmp_path}")
    assert code == 2 and "has 3 image(s)" in err and "leaves 2 for training" in err


def test_a_file_that_is_not_an_npz_archive_is_reported_as_such(tmp_path, capsys):
    path = tmp_path / "images.npz"
    path.write_text("not an archive\n")
    code, err = run_cli(capsys, "train", "dataset=npz", f"data_root={path}", f"out={tmp_path}")
    assert code == 2 and f"{path} is not an .npz archive" in err and "pickle" not in err
