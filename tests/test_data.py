"""Datasets: the bundled digits split, batch augmentation, the IDX reader, image folders."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from clihelp import assert_one_error_line, ok, run

from enofctl.data import _read_idx, augment_batch, load_dataset
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


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_idx_reader_plain_and_gzip(tmp_path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, size=(5, 3, 4))
    (tmp_path / "a-idx3-ubyte").write_bytes(_idx_bytes(arr))
    with gzip.open(tmp_path / "b-idx3-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(arr))
    assert np.array_equal(_read_idx(tmp_path / "a-idx3-ubyte"), arr)
    assert np.array_equal(_read_idx(tmp_path / "b-idx3-ubyte.gz"), arr)
    (tmp_path / "c-idx3-ubyte").write_bytes(_idx_bytes(arr)[:-3])
    with pytest.raises(DataError, match="truncated"):
        _read_idx(tmp_path / "c-idx3-ubyte")


def test_mnist_like_from_a_folder_and_missing(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 6)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(_idx_bytes(rng.integers(0, 255, (n, 28, 28))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(rng.integers(0, 10, (n,))))
    data = load_dataset("mnist", tmp_path)
    assert len(data.train) == 12 and len(data.test) == 6 and data.train.x.shape[1:] == (1, 28, 28)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("mnist", tmp_path / "nothing")
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
