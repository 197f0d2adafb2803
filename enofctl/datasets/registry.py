"""The datasets enofctl can train and evaluate on: one `register` call per dataset, in this module.

A registration holds every fact about a dataset: its `DatasetInfo` (classes, image size, channels, mean/std,
augmentation), where its loader lives, whether it is here without a download, the teacher it defaults to and
(event datasets) its sensor and default frames. The loader is named as ``"module:function"`` and imported on
the first load, so this module imports no torch: `enofctl datasets`, the CLI's choices and `dataset_info`
read it without loading a framework. A loader is called as ``loader(info, root, download, frames)`` and
returns an `enofctl.datasets.tensors.Data`.

Adding a dataset: one `register` call here, its loader function, and its tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enofctl.datasets.paths import default_data_dir, find_idx, mnist_candidates
from enofctl.errors import UsageError

if TYPE_CHECKING:
    from enofctl.datasets.tensors import Data
    from enofctl.schema import FrameSpec


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


def _always(info: DatasetInfo) -> bool:
    return True


def _never(info: DatasetInfo) -> bool:  # needs --data-dir
    return False


@dataclass(frozen=True)
class Dataset:
    """One registered dataset (see the module docstring)."""

    info: DatasetInfo
    loader: str  # "module:function", imported on the first load
    available: Callable[[DatasetInfo], bool] = _never  # here without a download (`enofctl datasets`)
    model: str = "resnet20"  # the teacher when --model is not given ...
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # ... and its timm kwargs
    needs_files: bool = True  # False: made or bundled here, no --data-dir looked at
    resizable: bool = False  # --image-size resizes its images (recorded as the model's input size)
    sensor: tuple[int, int] | None = None  # event datasets: the sensor's (H, W)
    frames: dict[str, Any] | None = None  # event datasets: the default FrameSpec's fields

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def events(self) -> bool:
        return self.frames is not None

    def default_model(self) -> tuple[str, dict[str, Any]]:
        return self.model, dict(self.model_kwargs)

    def default_frames(self) -> FrameSpec:
        """An event dataset's frames when none are asked for."""
        from enofctl.schema import FrameSpec

        if self.frames is None:
            raise ValueError(f"{self.name} is not an event dataset")
        return FrameSpec(**self.frames)

    def load(self, info: DatasetInfo, root: Path | None, download: bool, frames: FrameSpec | None) -> Data:
        """Its loader (imported now) called on ``info`` (this dataset's, or resized)."""
        module, _, function = self.loader.partition(":")
        return getattr(importlib.import_module(module), function)(info, root, download, frames)


_REGISTRY: dict[str, Dataset] = {}
DATASETS: dict[str, DatasetInfo] = {}  # every registered dataset's info, in registration order


def register(info: DatasetInfo, loader: str, **facts: Any) -> Dataset:
    """Register a dataset (see `Dataset` for ``facts``); a name is registered once."""
    if info.name in _REGISTRY:
        raise ValueError(f"dataset {info.name!r} is already registered")
    entry = Dataset(info, loader, **facts)
    _REGISTRY[info.name], DATASETS[info.name] = entry, info
    return entry


def dataset(name: str) -> Dataset:
    if name not in _REGISTRY:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def dataset_info(name: str) -> DatasetInfo:
    return dataset(name).info


def registered() -> tuple[Dataset, ...]:
    """Every registered dataset, in registration order."""
    return tuple(_REGISTRY.values())


def event_datasets() -> tuple[str, ...]:
    return tuple(d.name for d in _REGISTRY.values() if d.events)


def availability() -> list[tuple[str, bool, str]]:
    """(name, available here without download, description) for `enofctl datasets`."""
    return [(d.name, d.available(d.info), d.info.description) for d in _REGISTRY.values()]


# ----------------------------------------------------------------------------------------------------------
# the datasets


def _idx_here(info: DatasetInfo) -> bool:
    return any(find_idx(p) for p in mnist_candidates(info.name, None))


def _in_data_dir(folder: str) -> Callable[[DatasetInfo], bool]:
    return lambda info: (default_data_dir() / folder).is_dir()


DIGITS = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
GESTURE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                   "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll",
                   "air_drums", "air_guitar", "other_gestures")
_IMAGES, _EVENTS = "enofctl.datasets.images", "enofctl.events"

register(DatasetInfo("digits", 10, 1, (8, 8), (0.3,), (0.38,), 1, False,
                     "scikit-learn's bundled 8x8 digits (1,797 images; fixed stratified 80/20 split). No download.",
                     DIGITS),
         f"{_IMAGES}:load_digits", available=_always, model_kwargs={"width": 0.25}, needs_files=False)
register(DatasetInfo("synthetic", 4, 3, (16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 1, False,
                     "Learnable synthetic prototypes + noise (4 classes, 3x16x16). For tests and smoke runs.",
                     ("a", "b", "c", "d")),
         f"{_IMAGES}:load_synthetic", available=_always, model_kwargs={"width": 0.125}, needs_files=False)
register(DatasetInfo("mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), 2, False,
                     "MNIST (IDX files in --data-dir, or torchvision download with --download).", DIGITS),
         f"{_IMAGES}:load_mnist_like", available=_idx_here, model_kwargs={"width": 0.25})
register(DatasetInfo("fashion-mnist", 10, 1, (28, 28), (0.2860,), (0.3530,), 2, True,
                     "Fashion-MNIST (--data-dir, Debian's dataset-fashion-mnist package, or --download).",
                     ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot")),
         f"{_IMAGES}:load_mnist_like", available=_idx_here, model_kwargs={"width": 0.25})
register(DatasetInfo("cifar10", 10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 4, True,
                     "CIFAR-10 (torchvision layout in --data-dir, or --download).", CIFAR10_CLASSES),
         f"{_IMAGES}:load_cifar", available=_in_data_dir("cifar-10-batches-py"))
register(DatasetInfo("cifar100", 100, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4, True,
                     "CIFAR-100 (torchvision layout in --data-dir, or --download).",
                     tuple(f"class_{i}" for i in range(100))),
         f"{_IMAGES}:load_cifar", available=_in_data_dir("cifar-100-python"))
# event cameras (enofctl.events): frames of event counts, one channel per polarity, not normalized
register(DatasetInfo("nmnist", 10, 2, (34, 34), (0.0, 0.0), (1.0, 1.0), 2, False,
                     "N-MNIST events (--data-dir with Train/ and Test/ of .bin files; needs enofctl[events]).",
                     DIGITS),
         f"{_EVENTS}:load_registered", model_kwargs={"width": 0.25}, sensor=(34, 34), frames={"T": 8})
register(DatasetInfo("cifar10-dvs", 10, 2, (48, 48), (0.0, 0.0), (1.0, 1.0), 4, True,
                     "CIFAR10-DVS events (--data-dir with one folder per class of .aedat/.aedat4; needs "
                     "enofctl[events]).", CIFAR10_CLASSES),
         f"{_EVENTS}:load_registered", sensor=(128, 128), frames={"T": 10, "size": (48, 48)})
register(DatasetInfo("dvs-gesture", 11, 2, (64, 64), (0.0, 0.0), (1.0, 1.0), 4, False,
                     "DVS128 Gesture events (--data-dir with DvsGesture/'s .aedat, _labels.csv, trials_to_*.txt; "
                     "needs enofctl[events]).", GESTURE_CLASSES),
         f"{_EVENTS}:load_registered", model_kwargs={"width": 0.5}, sensor=(128, 128),
         frames={"T": 16, "size": (64, 64)})
register(DatasetInfo("imagefolder", 0, 3, (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0, True,
                     "Any folder of images: --data-dir with train/ and val/ subfolders, one folder per class."),
         f"{_IMAGES}:load_imagefolder", model="resnet18", resizable=True)
