"""Datasets: a registry of what enofctl can train and evaluate on, and batch iterators over them.

Small datasets (digits, MNIST-like, CIFAR, synthetic) are held in memory as float tensors in [0, 1] and
augmented on whole batches; `imagefolder` streams through torchvision. Normalization is done on batches
with the mean/std the manifest records, so an artifact carries everything needed to feed it. A validation
split is carved from the training set by `split_validation` (stratified, fixed by a seed).
"""

from __future__ import annotations

import copy
import gzip
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from enofctl.augment import Augment, augment_batch, autoaugment, cutout
from enofctl.errors import DataError, UsageError, first_line
from enofctl.schema import FrameSpec, TrainSubset

__all__ = ["DATASETS", "EVENT_DATASETS", "Augment", "Data", "DatasetInfo", "FolderSplit", "TensorSplit",
           "augment_batch", "autoaugment", "availability", "cutout", "data_at", "data_on", "dataset_info",
           "default_workers", "limit_train", "load_dataset", "normalize", "split_on", "split_validation",
           "stratified_subset"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def default_data_dir() -> Path:
    return Path(os.environ.get("ENOFCTL_DATA", Path.home() / ".cache" / "enofctl" / "data"))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int  # random-crop padding for training augmentation (0: none)
    hflip: bool  # random horizontal flip for training augmentation
    description: str
    classes: tuple[str, ...] = field(default=())


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits", 10, 1, (8, 8), (0.3,), (0.38,), 1, False,
        "scikit-learn's bundled 8x8 digits (1,797 images; fixed stratified 80/20 split). No download.",
        tuple(str(i) for i in range(10)),
    ),
    "synthetic": DatasetInfo(
        "synthetic", 4, 3, (16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 1, False,
        "Learnable synthetic prototypes + noise (4 classes, 3x16x16). For tests and smoke runs.",
        ("a", "b", "c", "d"),
    ),
    "mnist": DatasetInfo(
        "mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), 2, False,
        "MNIST (IDX files in --data-dir, or torchvision download with --download).",
        tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, 1, (28, 28), (0.2860,), (0.3530,), 2, True,
        "Fashion-MNIST (--data-dir, Debian's dataset-fashion-mnist package, or --download).",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"),
    ),
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 4, True,
        "CIFAR-10 (torchvision layout in --data-dir, or --download).",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4, True,
        "CIFAR-100 (torchvision layout in --data-dir, or --download).",
        tuple(f"class_{i}" for i in range(100)),
    ),
    # event cameras (enofctl.events): frames of event counts, one channel per polarity, not normalized
    "nmnist": DatasetInfo(
        "nmnist", 10, 2, (34, 34), (0.0, 0.0), (1.0, 1.0), 2, False,
        "N-MNIST events (--data-dir with Train/ and Test/ of .bin files; needs enofctl[events]).",
        tuple(str(i) for i in range(10)),
    ),
    "cifar10-dvs": DatasetInfo(
        "cifar10-dvs", 10, 2, (48, 48), (0.0, 0.0), (1.0, 1.0), 4, True,
        "CIFAR10-DVS events (--data-dir with one folder per class of .aedat/.aedat4; needs enofctl[events]).",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    "dvs-gesture": DatasetInfo(
        "dvs-gesture", 11, 2, (64, 64), (0.0, 0.0), (1.0, 1.0), 4, False,
        "DVS128 Gesture events (--data-dir with DvsGesture/'s .aedat, _labels.csv, trials_to_*.txt; needs "
        "enofctl[events]).",
        ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise", "right_arm_counter_clockwise",
         "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll", "air_drums", "air_guitar",
         "other_gestures"),
    ),
    "imagefolder": DatasetInfo(
        "imagefolder", 0, 3, (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0, True,
        "Any folder of images: --data-dir with train/ and val/ subfolders, one folder per class.",
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


# ----------------------------------------------------------------------------------------------------------
# batch sources


class TensorSplit:
    """One split held in memory. ``x``: float [N, C, H, W] in [0, 1]; ``y``: long [N]."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo):
        self.x, self.y, self.info = x, y, info

    def __len__(self) -> int:
        return len(self.y)

    def labels(self) -> torch.Tensor:
        return self.y

    def subset(self, idx: torch.Tensor) -> TensorSplit:
        idx = idx.to(self.x.device)
        return TensorSplit(self.x[idx], self.y[idx], self.info)

    def to(self, device: torch.device) -> TensorSplit:
        """This split held on ``device`` (itself when it already is), copied there once for every pass."""
        x = self.x.to(device)
        return self if x is self.x else TensorSplit(x, self.y.to(device), self.info)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
        limit: int | None = None,
        shard: tuple[int, int] = (0, 1),
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self) if limit is None else min(limit, len(self))
        order = torch.randperm(len(self), generator=generator)[:n] if shuffle else torch.arange(n)
        rank, world = shard
        order = order[rank::world]
        if drop_last and len(order) > batch_size:  # a small last batch makes BatchNorm's statistics noisy
            order = order[: len(order) - len(order) % batch_size]
        order = order.to(self.x.device)  # the draws stay on the CPU generator: the same order on every device
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, y = self.x[idx], self.y[idx]
            if augment is not None:
                x = augment.apply(x, self.info, generator)
            yield x, y


def default_workers() -> int:
    """Data-loading worker processes when none are asked for: one per core this process may use but one (the
    training process's), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))


class EpochBatches:
    """The batch sampler of a FolderSplit's one DataLoader: the batches of the coming pass, drawn by
    ``FolderSplit.batches`` from the run's generator and set here before each pass, so the loader (and its
    persistent workers) lives across epochs while every pass draws exactly what the run's generator says.
    A batch is a list of ``(image index, seed)``; the seed (-1: no augmentation) fixes that image's crop and
    flip wherever it is decoded, so the draws do not depend on the number of workers."""

    def __init__(self):
        self.batches: list[list[tuple[int, int]]] = []

    def set(self, order: torch.Tensor, seeds: torch.Tensor, batch_size: int, drop_last: bool) -> None:
        items = list(zip(order.tolist(), seeds.tolist(), strict=True))
        if drop_last and len(items) > batch_size:
            items = items[: len(items) - len(items) % batch_size]
        self.batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Images:
    """An ImageFolder's images by ``(index, seed)``: the evaluation transform for seed -1, else the training one
    with torch's random state seeded by ``seed`` (and restored after)."""

    def __init__(self, ds, train_tf, eval_tf):
        self.ds, self.train_tf, self.eval_tf = ds, train_tf, eval_tf

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, item: tuple[int, int]):
        i, seed = item
        path, target = self.ds.samples[i]
        img = self.ds.loader(path)
        if seed < 0:
            return self.eval_tf(img), target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.train_tf(img), target


class FolderSplit:
    """An image folder streamed through torchvision (for data too large to hold in memory): ``workers``
    processes decode it (0: this one), into pinned memory with ``pin_memory`` (CUDA), through one DataLoader
    kept for every pass (its workers persist)."""

    def __init__(self, root: Path, info: DatasetInfo, train: bool, workers: int = 0, pin_memory: bool = False):
        from torchvision import datasets, transforms

        h, w = info.image_size
        self._train_tf = transforms.Compose(
            [transforms.RandomResizedCrop((h, w)), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
        )
        self._eval_tf = transforms.Compose(
            [transforms.Resize(int(h * 256 / 224)), transforms.CenterCrop((h, w)), transforms.ToTensor()]
        )
        self.ds = datasets.ImageFolder(str(root))
        self.classes = tuple(self.ds.classes)
        self.info, self.train, self.workers, self.pin_memory = info, train, workers, pin_memory
        self.index: torch.Tensor | None = None  # the images of ds in this split (None: all)
        self._loader = None
        self._sampler = EpochBatches()

    def __len__(self) -> int:
        return len(self.ds) if self.index is None else len(self.index)

    def labels(self) -> torch.Tensor:
        y = torch.tensor(self.ds.targets, dtype=torch.long)
        return y if self.index is None else y[self.index]

    def subset(self, idx: torch.Tensor) -> FolderSplit:
        part = copy.copy(self)
        part.index = idx if self.index is None else self.index[idx]
        part._loader, part._sampler = None, EpochBatches()  # its own loader
        return part

    def loading(self, workers: int, pin_memory: bool) -> FolderSplit:
        """This split read by ``workers`` processes, pinned or not (itself when it already is)."""
        if (workers, pin_memory) == (self.workers, self.pin_memory):
            return self
        part = copy.copy(self)
        part.workers, part.pin_memory = workers, pin_memory
        part._loader, part._sampler = None, EpochBatches()
        return part

    def loader(self):
        """The split's DataLoader, made on first use and kept (with its workers) for every later pass."""
        from torch.utils.data import DataLoader

        if self._loader is None:
            self._loader = DataLoader(_Images(self.ds, self._train_tf, self._eval_tf), batch_sampler=self._sampler,
                                      num_workers=self.workers, pin_memory=self.pin_memory,
                                      persistent_workers=self.workers > 0)
        return self._loader

    def batches(self, batch_size, *, shuffle=False, augment: Augment | None = None, generator=None, limit=None,
                shard=(0, 1), drop_last=False):
        crop_flip = augment is not None and augment.crop_flip
        on_batch = replace(augment, crop_flip=False) if augment is not None else None  # crop/flip: per image
        n = len(self) if limit is None else min(limit, len(self))
        order = torch.randperm(len(self), generator=generator)[:n] if shuffle else torch.arange(n)
        seeds = torch.randint(0, 2**62, (n,), generator=generator) if crop_flip else torch.full((n,), -1)
        if self.index is not None:
            order = self.index[order]
        self._sampler.set(order[shard[0] :: shard[1]], seeds[shard[0] :: shard[1]], batch_size, drop_last)
        for x, y in _reading(iter(self.loader()), self.ds.root):
            yield (on_batch.apply(x, self.info, generator) if on_batch else x), y


def _reading(batches: Iterator, root: str) -> Iterator:
    """``batches``, with a failure to read or decode an image (also in a DataLoader worker, whose message
    holds the worker's traceback) turned into a one-line DataError."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as e:
            raise DataError(f"cannot read an image under {root}: {_worker_reason(e)}") from e
        yield batch


def _worker_reason(e: Exception) -> str:
    """The original error's last line, e.g. "PIL.UnidentifiedImageError: cannot identify image file 'x.png'"."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(e).__name__


@dataclass
class Data:
    info: DatasetInfo
    train: TensorSplit | FolderSplit
    test: TensorSplit | FolderSplit
    classes: tuple[str, ...]
    val: TensorSplit | FolderSplit | None = None  # carved from the training set by split_validation
    frames: FrameSpec | None = None  # event datasets: how each recording became frames (enofctl.events)
    root: Path | None = None  # event datasets: the folder read (to bin it again at another T)
    train_subset: TrainSubset | None = None  # --limit-train: the fixed subset `train` now is (limit_train)


def split_on(split: TensorSplit | FolderSplit, device: torch.device, workers: int | None = None,
             ) -> TensorSplit | FolderSplit:
    """``split`` ready to feed ``device``: in memory, copied there once (CUDA; it is then indexed and augmented
    there, with the same draws from the CPU generator); an image folder, read by ``workers`` processes (None:
    `default_workers`) into pinned memory when ``device`` is CUDA."""
    if isinstance(split, TensorSplit):
        return split.to(device) if device.type == "cuda" else split
    return split.loading(default_workers() if workers is None else workers, pin_memory=device.type == "cuda")


def data_on(data: Data, device: torch.device, workers: int | None = None) -> Data:
    """``data`` with every split `split_on` ``device``."""
    val = split_on(data.val, device, workers) if data.val is not None else None
    return replace(data, train=split_on(data.train, device, workers), test=split_on(data.test, device, workers),
                   val=val)


def split_validation(data: Data, fraction: float, seed: int) -> Data:
    """Hold out ``fraction`` of the training set for validation: per class (stratified), drawn with its own
    generator seeded by ``seed``, so every rank under torchrun computes the same split and the training
    draws do not change. Every class keeps at least one training image. ``fraction == 0``: ``data``."""
    if not fraction:
        return data
    if data.val is not None:
        raise ValueError("this data already has a validation split")
    labels = data.train.labels()
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(labels):  # sorted
        idx = (labels == c).nonzero().flatten()
        k = min(len(idx) - 1, int(fraction * len(idx) + 0.5))
        held.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    val_idx = torch.cat(held).sort().values
    if len(val_idx) == 0:
        raise UsageError(f"--val-fraction {fraction} of {len(labels)} training images holds none out; "
                         "raise it")
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val_idx] = False
    train_idx = keep.nonzero().flatten()
    return replace(data, train=data.train.subset(train_idx), val=data.train.subset(val_idx))


def stratified_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` of the indices of ``labels``, sorted, drawn once by a generator seeded with ``seed``, per class in
    proportion to its size: each class's indices in a random order, the k-th of a class of size c placed at
    (k + 0.5) / c, and the ``n`` earliest places taken (so every class gets round(n c / N) +- 1)."""
    g = torch.Generator().manual_seed(seed)
    idx, place = [], []
    for c in torch.unique(labels):  # sorted
        members = (labels == c).nonzero().flatten()
        idx.append(members[torch.randperm(len(members), generator=g)])
        place.append((torch.arange(len(members), dtype=torch.float64) + 0.5) / len(members))
    idx_all, place_all = torch.cat(idx), torch.cat(place)
    order = torch.sort(place_all, stable=True).indices[:n]
    return idx_all[order].sort().values


def limit_train(data: Data, n: int | None, seed: int) -> Data:
    """``--limit-train N``: the training split cut once to a fixed, stratified subset of ``n`` samples
    (`stratified_subset` with ``seed``), which every epoch then draws from, recorded as ``data.train_subset``
    (size, seed and the sha256 of the sorted indices). ``n`` None, or at least the split's size: ``data``."""
    if n is None or n >= len(data.train) or data.train_subset is not None:
        return data
    import hashlib

    idx = stratified_subset(data.train.labels(), n, seed)
    digest = hashlib.sha256(idx.to(torch.int64).numpy().astype("<i8").tobytes()).hexdigest()
    record = TrainSubset(size=n, of=len(data.train), seed=seed, sha256=digest)
    return replace(data, train=data.train.subset(idx), train_subset=record)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


# ----------------------------------------------------------------------------------------------------------
# loaders


EVENT_DATASETS = ("nmnist", "cifar10-dvs", "dvs-gesture")


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False,
                 frames: FrameSpec | None = None, image_size: int | None = None) -> Data:
    """Load a dataset by name. Raises UsageError for an unknown name, DataError if it is not available.
    ``frames``: how an event dataset's recordings become frames (None: its default; ignored for images).
    ``image_size``: the side an ``imagefolder``'s images are resized to (None: 224); other datasets have their
    own size (a UsageError)."""
    info = dataset_info(name)
    if image_size is not None and image_size != info.image_size[-1]:
        if name != "imagefolder":
            raise UsageError(f"--image-size {image_size}: {name}'s images are {'x'.join(map(str, info.image_size))}; "
                             "only imagefolder is resized")
        info = replace(info, image_size=(image_size, image_size))
    root = Path(data_dir) if data_dir else None
    # a folder named is the only place looked in (the CLI refuses a --data-dir that does not exist, exit 2)
    if root is not None and name not in ("digits", "synthetic") and not root.is_dir() and not download:
        raise DataError(f"{name}: its data folder {root} does not exist; pass --data-dir")
    if name in EVENT_DATASETS:
        from enofctl.events import load_events

        return load_events(name, root, frames)
    if name == "digits":
        return _digits(info)
    if name == "synthetic":
        return _synthetic(info)
    if name in ("mnist", "fashion-mnist"):
        return _mnist_like(info, root, download)
    if name in ("cifar10", "cifar100"):
        return _cifar(info, root, download)
    return _imagefolder(info, root)


def recorded_image_size(name: str, input_size: tuple[int, ...]) -> int | None:
    """For `load_dataset`: the ``image_size`` an artifact of ``name`` was made with (its manifest's input
    size: an ``imagefolder`` teacher trained with --image-size), None for other datasets."""
    return int(input_size[-1]) if name == "imagefolder" else None


def data_at(data: Data, T: int) -> Data:
    """``data`` binned into ``T`` frames per sample when it is an event dataset with another T (read from the
    frame cache after the first time); otherwise ``data`` itself."""
    if data.frames is None or data.frames.T == T:
        return data
    from enofctl.events import load_events

    return load_events(data.info.name, data.root, data.frames.model_copy(update={"T": T}))


def _tensor_data(info, x_tr, y_tr, x_te, y_te, classes=None) -> Data:
    return Data(info, TensorSplit(x_tr, y_tr, info), TensorSplit(x_te, y_te, info), classes or info.classes)


def _digits(info: DatasetInfo) -> Data:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)  # [N, 1, 8, 8]
    y = torch.tensor(d.target, dtype=torch.long)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=d.target, random_state=0)
    idx_tr, idx_te = torch.tensor(idx_tr), torch.tensor(idx_te)
    return _tensor_data(info, x[idx_tr], y[idx_tr], x[idx_te], y[idx_te])


def _synthetic(info: DatasetInfo, n_train: int = 512, n_test: int = 256) -> Data:
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


def _read_idx(path: Path) -> np.ndarray:
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


def _check_split(info: DatasetInfo, x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    """Images [N, C, H, W] of the dataset's shape, as many labels, each a class of the dataset."""
    shape = (info.in_chans, *info.image_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise DataError(f"{where}: images of shape {tuple(x.shape[1:])}, {info.name} has {shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{where}: {len(x)} images but {y.numel()} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= info.num_classes):
        bad = int(y.max()) if int(y.max()) >= info.num_classes else int(y.min())
        raise DataError(f"{where}: label {bad} is out of range for {info.num_classes} classes")


_IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(folder: Path) -> dict[str, Path] | None:
    found = {}
    for split, stems in _IDX_STEMS.items():
        for i, stem in enumerate(stems):
            hits = [folder / (stem + ext) for ext in ("", ".gz") if (folder / (stem + ext)).is_file()]
            if not hits:
                return None
            found[f"{split}{i}"] = hits[0]
    return found


def _mnist_candidates(info: DatasetInfo, root: Path | None) -> list[Path]:
    tv_name = "FashionMNIST" if info.name == "fashion-mnist" else "MNIST"
    bases = [root] if root else [default_data_dir()]
    out = []
    for b in bases:
        out += [b, b / info.name, b / tv_name / "raw"]
    if info.name == "fashion-mnist" and root is None:  # a --data-dir is the only place looked in
        out.append(DEBIAN_FASHION_MNIST)
    return out


def _mnist_like(info: DatasetInfo, root: Path | None, download: bool) -> Data:
    files = next((f for f in map(_find_idx, _mnist_candidates(info, root)) if f), None)
    if files is None and download:
        from torchvision import datasets

        cls = datasets.FashionMNIST if info.name == "fashion-mnist" else datasets.MNIST
        base = root or default_data_dir()
        try:
            cls(str(base), train=True, download=True)
            cls(str(base), train=False, download=True)
        except Exception as e:  # network errors come in many types
            raise DataError(f"could not download {info.name}: {e}") from e
        files = _find_idx(base / cls.__name__ / "raw")
    if files is None:
        hint = " or `apt-get install dataset-fashion-mnist`" if info.name == "fashion-mnist" else ""
        raise DataError(
            f"{info.name} not found (looked in {', '.join(map(str, _mnist_candidates(info, root)))}); "
            f"pass --data-dir with the IDX files, --download{hint}"
        )

    def load(split):
        x = torch.from_numpy(_read_idx(files[f"{split}0"]).copy()).float().div_(255).unsqueeze(1)
        y = torch.from_numpy(_read_idx(files[f"{split}1"]).astype(np.int64))
        _check_split(info, x, y, f"{files[f'{split}0'].parent} ({split})")
        return x, y

    return _tensor_data(info, *load("train"), *load("test"))


def _cifar(info: DatasetInfo, root: Path | None, download: bool) -> Data:
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


def _imagefolder(info: DatasetInfo, root: Path | None) -> Data:
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


def availability() -> list[tuple[str, bool, str]]:
    """(name, available here without download, description) for `enofctl datasets`."""
    rows = []
    for name, info in DATASETS.items():
        if name in ("digits", "synthetic"):
            ok = True
        elif name in ("mnist", "fashion-mnist"):
            ok = any(_find_idx(p) for p in _mnist_candidates(info, None))
        elif name in ("cifar10", "cifar100"):
            sub = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
            ok = (default_data_dir() / sub).is_dir()
        else:
            ok = False  # needs --data-dir (imagefolder, event datasets)
        rows.append((name, ok, info.description))
    return rows
