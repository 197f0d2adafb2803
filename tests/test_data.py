"""Datasets: the bundled digits split, the validation split, batch augmentation (crop/flip, Cutout,
AutoAugment), the IDX reader, image folders."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from clihelp import assert_one_error_line, ok, run

from enofctl import artifacts
from enofctl.data import (
    DATASETS,
    Augment,
    Data,
    TensorSplit,
    augment_batch,
    autoaugment,
    cutout,
    load_dataset,
    split_validation,
)
from enofctl.datasets.images import read_idx
from enofctl.errors import DataError, UsageError


def test_digits_fixed_stratified_split() -> None:
    a, b = load_dataset("digits"), load_dataset("digits")
    assert len(a.train) == 1437 and len(a.test) == 360
    assert torch.equal(a.test.y, b.test.y) and torch.equal(a.train.x, b.train.x)  # fixed
    counts = torch.bincount(a.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each class
    assert a.train.x.shape[1:] == (1, 8, 8) and 0 <= a.train.x.min() and a.train.x.max() <= 1


def test_augment_batch_crops_and_flips_per_sample() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    y = augment_batch(x, pad=1, hflip=False, generator=g)
    assert y.shape == x.shape
    for i in range(2):  # every output is a 4x4 window of the zero-padded input
        padded = torch.nn.functional.pad(x[i, 0], (1, 1, 1, 1))
        windows = [padded[r:r + 4, c:c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(y[i, 0], w) for w in windows)
    flipped = augment_batch(x, pad=0, hflip=True, generator=torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))


def _numbered(n_per_class: list[int]) -> Data:
    """A tensor dataset whose images hold their own index (to tell samples apart) and imbalanced classes."""
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(5))]
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1)
    info = DATASETS["synthetic"]
    return Data(info, TensorSplit(x, y, info), TensorSplit(x[:4], y[:4], info), info.classes)


def test_validation_split_is_fixed_disjoint_and_stratified() -> None:
    full = _numbered([100, 50, 20, 1])
    a = split_validation(full, 0.2, seed=0)
    ids_train, ids_val = a.train.x.flatten().long(), a.val.x.flatten().long()
    assert not set(ids_train.tolist()) & set(ids_val.tolist())  # disjoint
    assert sorted(ids_train.tolist() + ids_val.tolist()) == list(range(171))  # together: the training set
    assert torch.equal(a.val.y, full.train.y[ids_val]) and torch.equal(a.train.y, full.train.y[ids_train])
    assert torch.bincount(a.val.y, minlength=4).tolist() == [20, 10, 4, 0]  # per class; a lone one stays
    b = split_validation(_numbered([100, 50, 20, 1]), 0.2, seed=0)
    assert torch.equal(b.val.x, a.val.x) and torch.equal(b.train.x, a.train.x)  # every rank gets this split
    assert not torch.equal(split_validation(full, 0.2, seed=1).val.x, a.val.x)  # fixed by the seed
    assert split_validation(full, 0.0, seed=0) is full and full.val is None
    assert torch.equal(a.test.x, full.test.x)  # the test split is untouched
    with pytest.raises(UsageError, match="--val-fraction"):
        split_validation(_numbered([3, 3]), 0.1, seed=0)  # nothing held out
    digits = split_validation(load_dataset("digits"), 0.1, seed=0)
    assert 140 <= len(digits.val) <= 148 and len(digits.train) + len(digits.val) == 1437  # ~10 % of each class


def test_cutout_fills_one_square_of_the_requested_size() -> None:
    x = torch.ones(64, 3, 12, 12)
    y = cutout(x, 4, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.equal(x, torch.ones_like(x))  # not in place
    whole = 0
    for img in y:
        hole = img == 0
        assert torch.equal(hole, hole[:1].expand_as(hole))  # the same square in every channel
        r, c = hole[0].any(1).nonzero().flatten(), hole[0].any(0).nonzero().flatten()
        assert 1 <= len(r) <= 4 and 1 <= len(c) <= 4  # clipped at the borders, never larger
        assert hole[0].sum() == len(r) * len(c) and hole[0][r[0]:r[-1] + 1, c[0]:c[-1] + 1].all()  # a rectangle
        whole += len(r) == len(c) == 4
    assert whole > 20  # away from the borders it is the whole 4x4 square
    mean = cutout(x, 4, torch.Generator().manual_seed(0), fill=(0.1, 0.2, 0.3))
    assert torch.equal(mean == 1, y == 1)  # the same squares, filled with the per-channel value
    for c, v in enumerate((0.1, 0.2, 0.3)):
        assert (mean[:, c][y[:, c] == 0] == torch.tensor(v)).all()


def test_autoaugment_keeps_shape_dtype_and_range_and_is_seeded() -> None:
    x = torch.rand(16, 3, 10, 10).mul(255).round().div(255)  # 8-bit images as float
    state = torch.get_rng_state()
    y = autoaugment(x, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)  # draws come from the generator only
    assert y.shape == x.shape and y.dtype == x.dtype and 0 <= y.min() and y.max() <= 1
    assert torch.equal(y, autoaugment(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(y, x)  # some images changed
    x8 = x.mul(255).round().to(torch.uint8)
    y8 = autoaugment(x8, torch.Generator().manual_seed(0))
    assert y8.dtype == torch.uint8 and y8.shape == x8.shape and torch.equal(y8, y.mul(255).round().to(torch.uint8))


def test_augment_combines_autoaugment_and_cutout() -> None:
    data = load_dataset("synthetic")
    both = Augment(autoaugment=True, cutout=4)
    x, _ = next(data.train.batches(32, augment=both, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (32, 3, 16, 16) and 0 <= x.min() and x.max() <= 1


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_idx_reader_plain_and_gzip(tmp_path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, size=(5, 3, 4))
    (tmp_path / "a-idx3-ubyte").write_bytes(_idx_bytes(arr))
    with gzip.open(tmp_path / "b-idx3-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(arr))
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)
    assert np.array_equal(read_idx(tmp_path / "b-idx3-ubyte.gz"), arr)
    (tmp_path / "c-idx3-ubyte").write_bytes(_idx_bytes(arr)[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "c-idx3-ubyte")


def test_mnist_like_from_a_folder_and_missing(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 6)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(_idx_bytes(rng.integers(0, 255, (n, 28, 28))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(rng.integers(0, 10, (n,))))
    data = load_dataset("mnist", tmp_path)
    assert len(data.train) == 12 and len(data.test) == 6 and data.train.x.shape[1:] == (1, 28, 28)
    with pytest.raises(DataError, match="data folder .*nothing does not exist"):  # not found elsewhere
        load_dataset("mnist", tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("fashion-mnist", tmp_path / "empty")  # not the system's copy: --data-dir is where to look
    with pytest.raises(UsageError):
        load_dataset("no-such-set")


def test_imagefolder_teacher(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / "imgs" / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / c / f"{i}.png")
    out = tmp_path / "t.safetensors"
    ok("teacher", "train", "--dataset", "imagefolder", "--data-dir", tmp_path / "imgs", "--model", "resnet20",
       "--width", "0.0625", "--epochs", "1", "--batch-size", "4", "--quiet", "--out", out)
    assert_one_error_line(*run("teacher", "train", "--dataset", "imagefolder", "--out", tmp_path / "x.safetensors"),
                          1, "--data-dir")
    # --image-size: recorded as the model's input size, and every later stage reads the folder at it
    small = tmp_path / "t16.safetensors"
    ok("teacher", "train", "--dataset", "imagefolder", "--data-dir", tmp_path / "imgs", "--model", "resnet20",
       "--width", "0.0625", "--epochs", "1", "--batch-size", "4", "--image-size", "16", "--quiet", "--out", small)
    m = artifacts.load(small).manifest
    assert m.model.input_size == (3, 16, 16) and m.config["image_size"] == 16
    assert json.loads(ok("eval", small, "--speed-batches", "0", "--json"))["samples"] == 6
    assert_one_error_line(*run("teacher", "train", "--dataset", "digits", "--image-size", "16", "--out", out), 2,
                          "--image-size 16", "only imagefolder")
    # its default model (resnet18) has no --width: one line
    assert_one_error_line(*run("teacher", "train", "--dataset", "imagefolder", "--data-dir", tmp_path / "imgs",
                               "--width", "0.5", "--epochs", "1", "--out", tmp_path / "w.safetensors"), 2,
                          "'resnet18' takes no option 'width'", "resnet20")
