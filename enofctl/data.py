"""The data layer's public names in one place (the modules live in `enofctl.datasets`; event datasets in
`enofctl.events`; batch augmentation in `enofctl.augment`).

Every dataset is registered once in `enofctl.datasets.registry` (its info, loader, availability, default
teacher and, for event data, its sensor and frames). Small datasets (digits, MNIST-like, CIFAR, synthetic) are
held in memory as float tensors in [0, 1] and augmented on whole batches; `imagefolder` streams through
torchvision. Normalization is done on batches with the mean/std the manifest records, so an artifact carries
everything needed to feed it. A validation split is carved from the training set by `split_validation`
(stratified, fixed by a seed).
"""

from __future__ import annotations

from enofctl.augment import Augment, augment_batch, autoaugment, cutout
from enofctl.datasets.folder import FolderSplit
from enofctl.datasets.load import data_at, load_dataset, recorded_image_size
from enofctl.datasets.paths import DEBIAN_FASHION_MNIST, default_data_dir
from enofctl.datasets.registry import DATASETS, DatasetInfo, availability, dataset, dataset_info, event_datasets
from enofctl.datasets.tensors import (
    Data,
    TensorSplit,
    data_on,
    limit_train,
    normalize,
    split_on,
    split_validation,
    stratified_subset,
)
from enofctl.datasets.workers import default_workers

EVENT_DATASETS = event_datasets()  # what enofctl.cli reads; the registry says which datasets are event data

__all__ = ["DATASETS", "DEBIAN_FASHION_MNIST", "EVENT_DATASETS", "Augment", "Data", "DatasetInfo", "FolderSplit",
           "TensorSplit", "augment_batch", "autoaugment", "availability", "cutout", "data_at", "data_on",
           "dataset", "dataset_info", "default_data_dir", "default_workers", "event_datasets", "limit_train",
           "load_dataset", "normalize", "recorded_image_size", "split_on", "split_validation", "stratified_subset"]
