"""The image datasets' loaders (named by their registrations in `enofctl.datasets.registry`): scikit-learn's
digits, the synthetic prototypes, MNIST-like IDX files, torchvision's CIFAR folders and an image folder. Each
is called as ``loader(info, root, download, frames)`` and returns `Data` (images as float tensors in [0, 1],
or an image folder streamed through torchvision)."""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from enofctl.datasets.folder import FolderSplit
from enofctl.datasets.paths import default_data_dir, find_idx, mnist_candidates
from enofctl.datasets.registry import DatasetInfo
from enofctl.datasets.tensors import Data, TensorSplit
from enofctl.datasets.workers import default_workers
from enofctl.errors import DataError, first_line
from enofctl.schema import FrameSpec


def _tensor_data(info, x_tr, y_tr, x_te, y_te, classes=None) -> Data:
    return Data(info, TensorSplit(x_tr, y_tr, info), TensorSplit(x_te, y_te, info), classes or info.classes)


def load_digits(info: DatasetInfo, root: Path | None, download: bool, frames: FrameSpec | None) -> Data:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)  # [N, 1, 8, 8]
    y = torch.tensor(d.target, dtype=torch.long)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=d.target, random_state=0)
    idx_tr, idx_te = torch.tensor(idx_tr), torch.tensor(idx_te)
    return _tensor_data(info, x[idx_tr], y[idx_tr], x[idx_te], y[idx_te])


def load_synthetic(info: DatasetInfo, root: Path | None, download: bool, frames: FrameSpec | None, *,
                   n_train: int = 512, n_test: int = 256) -> Data:
    """Class prototypes (smooth random patterns) plus noise: learnable, deterministic, tiny."""
    g = torch.Generator().manual_seed(1234)
    c, (h, w) = info.in_chans, info.image_size
    protos = torch.rand(info.num_classes, c, h // 4, w // 4, generator=g)
    protos = F.interpolate(protos, size=(h, w), mode="bilinear", align_corners=False)

    def make(n):
        y = torch.randint(0, info.num_classes, (n,), generator=g)
        x = (0.6 * protos[y] + 0.4 * torch.rand(n, c, h, w, generator=g)).clamp(0, 1)
        return x, y

    return _tensor_data(info, *make(n_train), *make(n_test))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not; a DataError for anything else or a truncated one."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip's BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {first_line(e)}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is not an IDX file (bad header)")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise DataError(f"{path} is truncated or has extra bytes ({data.size} of {math.prod(dims)} values)")
    return data.reshape(dims)


def check_split(info: DatasetInfo, x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    """Images [N, C, H, W] of the dataset's shape, as many labels, each a class of the dataset."""
    shape = (info.in_chans, *info.image_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise DataError(f"{where}: images of shape {tuple(x.shape[1:])}, {info.name} has {shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{where}: {len(x)} images but {y.numel()} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= info.num_classes):
        bad = int(y.max()) if int(y.max()) >= info.num_classes else int(y.min())
        raise DataError(f"{where}: label {bad} is out of range for {info.num_classes} classes")


def load_mnist_like(info: DatasetInfo, root: Path | None, download: bool, frames: FrameSpec | None) -> Data:
    files = next((f for f in map(find_idx, mnist_candidates(info.name, root)) if f), None)
    if files is None and download:
        from torchvision import datasets

        cls = datasets.FashionMNIST if info.name == "fashion-mnist" else datasets.MNIST
        base = root or default_data_dir()
        try:
            cls(str(base), train=True, download=True)
            cls(str(base), train=False, download=True)
        except Exception as e:  # network errors come in many types
            raise DataError(f"could not download {info.name}: {e}") from e
        files = find_idx(base / cls.__name__ / "raw")
    if files is None:
        hint = " or `apt-get install dataset-fashion-mnist`" if info.name == "fashion-mnist" else ""
        raise DataError(
            f"{info.name} not found (looked in {', '.join(map(str, mnist_candidates(info.name, root)))}); "
            f"pass --data-dir with the IDX files, --download{hint}"
        )

    def load(split):
        x = torch.from_numpy(read_idx(files[f"{split}0"]).copy()).float().div_(255).unsqueeze(1)
        y = torch.from_numpy(read_idx(files[f"{split}1"]).astype(np.int64))
        check_split(info, x, y, f"{files[f'{split}0'].parent} ({split})")
        return x, y

    return _tensor_data(info, *load("train"), *load("test"))


def load_cifar(info: DatasetInfo, root: Path | None, download: bool, frames: FrameSpec | None) -> Data:
    from torchvision import datasets

    cls = datasets.CIFAR10 if info.name == "cifar10" else datasets.CIFAR100
    base = root or default_data_dir()
    try:
        tr = cls(str(base), train=True, download=download)
        te = cls(str(base), train=False, download=download)
    except RuntimeError as e:
        bad = _corrupt_cifar_file(cls, base)
        if bad is not None:
            raise DataError(f"{info.name} under {base} is corrupted: {bad} fails torchvision's md5 check; replace "
                            "it (or download again with --download into an empty --data-dir)") from e
        raise DataError(
            f"{info.name} not found under {base}; pass --data-dir with the torchvision CIFAR folder, or --download"
        ) from e
    except Exception as e:
        raise DataError(f"could not get {info.name}: {e}") from e

    def tensors(ds):
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255)
        return x, torch.tensor(ds.targets, dtype=torch.long)

    return _tensor_data(info, *tensors(tr), *tensors(te), tuple(tr.classes))


def _corrupt_cifar_file(cls, base: Path) -> Path | None:
    """The first file of a torchvision CIFAR folder under ``base`` that is there but fails its md5 (None: the
    folder or a file is missing, or all pass)."""
    from torchvision.datasets.utils import check_integrity

    folder = base / cls.base_folder
    if not folder.is_dir():
        return None
    for name, md5 in (*cls.train_list, *cls.test_list):
        path = folder / name
        if path.is_file() and not check_integrity(str(path), md5):
            return path
    return None


def load_imagefolder(info: DatasetInfo, root: Path | None, download: bool, frames: FrameSpec | None) -> Data:
    if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DataError("imagefolder needs --data-dir pointing at a folder with train/ and val/ subfolders")
    try:
        workers = default_workers()  # the stages that take --workers set their own (`split_on`)
        train, test = FolderSplit(root / "train", info, True, workers), FolderSplit(root / "val", info, False, workers)
    except (OSError, RuntimeError) as e:  # torchvision: no class folders, no image files
        raise DataError(f"cannot use {root} as an image folder: {first_line(e)}") from e
    if train.classes != test.classes:
        raise DataError(f"train/ and val/ under {root} hold different class folders")
    info = replace(info, num_classes=len(train.classes), classes=train.classes)
    train.info = test.info = info
    return Data(info, train, test, train.classes)


