"""Loading a dataset by name through its registration (`enofctl.datasets.registry`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from enofctl.datasets.registry import DATASETS, dataset
from enofctl.datasets.tensors import Data
from enofctl.errors import DataError, UsageError
from enofctl.schema import FrameSpec


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False,
                 frames: FrameSpec | None = None, image_size: int | None = None) -> Data:
    """Load a dataset by name. Raises UsageError for an unknown name, DataError if it is not available.
    ``frames``: how an event dataset's recordings become frames (None: its default; ignored for images).
    ``image_size``: the side an ``imagefolder``'s images are resized to (None: 224); other datasets have their
    own size (a UsageError)."""
    entry = dataset(name)
    info = entry.info
    if image_size is not None and image_size != info.image_size[-1]:
        if not entry.resizable:
            raise UsageError(f"--image-size {image_size}: {name}'s images are {'x'.join(map(str, info.image_size))}; "
                             "only imagefolder is resized")
        info = replace(info, image_size=(image_size, image_size))
    root = Path(data_dir) if data_dir else None
    # a folder named is the only place looked in (the CLI refuses a --data-dir that does not exist, exit 2)
    if root is not None and entry.needs_files and not root.is_dir() and not download:
        raise DataError(f"{name}: its data folder {root} does not exist; pass --data-dir")
    return entry.load(info, root, download, frames)


def recorded_image_size(name: str, input_size: tuple[int, ...]) -> int | None:
    """For `load_dataset`: the ``image_size`` an artifact of ``name`` was made with (its manifest's input
    size: an ``imagefolder`` teacher trained with --image-size), None for other datasets."""
    return int(input_size[-1]) if name in DATASETS and dataset(name).resizable else None


def data_at(data: Data, T: int) -> Data:
    """``data`` binned into ``T`` frames per sample when it is an event dataset with another T (read from the
    frame cache after the first time); otherwise ``data`` itself."""
    if data.frames is None or data.frames.T == T:
        return data
    entry = dataset(data.info.name)
    return entry.load(entry.info, data.root, False, data.frames.model_copy(update={"T": T}))
