"""The dataset registry: one registration per dataset, read by name; every loader it names exists."""

from __future__ import annotations

import importlib

import pytest

from enofctl.datasets.registry import DATASETS, dataset, dataset_info, event_datasets, register, registered
from enofctl.errors import UsageError


def test_every_registered_loader_is_a_function() -> None:
    for d in registered():
        module, _, function = d.loader.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), d.name


def test_names_infos_and_order() -> None:
    assert [d.name for d in registered()] == list(DATASETS) == [
        "digits", "synthetic", "mnist", "fashion-mnist", "cifar10", "cifar100", "nmnist", "cifar10-dvs",
        "dvs-gesture", "imagefolder"]
    assert all(dataset_info(n) is DATASETS[n] is dataset(n).info for n in DATASETS)
    assert all(len(i.classes) == i.num_classes for i in DATASETS.values() if i.num_classes)


def test_event_datasets_have_a_sensor_and_frames_of_their_size() -> None:
    assert event_datasets() == ("nmnist", "cifar10-dvs", "dvs-gesture")
    for name in event_datasets():
        d = dataset(name)
        assert d.info.image_size == tuple(d.default_frames().size or d.sensor)
    with pytest.raises(ValueError, match="not an event dataset"):
        dataset("digits").default_frames()


def test_default_models() -> None:
    assert dataset("imagefolder").default_model() == ("resnet18", {})
    name, kwargs = dataset("synthetic").default_model()
    kwargs["width"] = 1.0  # a copy: the registration keeps its own
    assert dataset("synthetic").default_model() == ("resnet20", {"width": 0.125})


def test_unknown_and_twice_registered_names_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown dataset 'nope'; choose one of: digits, synthetic, mnist"):
        dataset_info("nope")
    with pytest.raises(ValueError, match="already registered"):
        register(DATASETS["digits"], "enofctl.datasets.images:load_digits")
