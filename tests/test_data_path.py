"""The data path: `--workers` (default from the cores, validated, in the configs, safe to change on --resume),
image folders read through one kept DataLoader whose per-pass batches come from the run's generator (the same
draws for any number of workers, and on resume), pinned memory for CUDA, and in-memory splits on the device."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from clihelp import assert_one_error_line, listing, run

from enofctl.augment import Augment, augment_batch, cutout
from enofctl.data import DATASETS, FolderSplit, TensorSplit, data_on, default_workers, split_on
from enofctl.stages import DistillConfig, EvalConfig, TeacherConfig
from enofctl.stages.train_state import resume_changes

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of five 12x12 PNGs, each image different."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (12, 12), (20 * i, 100 * c, 7 * i)).save(root / cls / f"{i}.png")
    return root


def _split(root: Path, workers: int = 0) -> FolderSplit:
    info = replace(DATASETS["imagefolder"], image_size=(8, 8), num_classes=2)
    return FolderSplit(root, info, True, workers=workers)


def _passes(split: FolderSplit, seed: int, passes: int = 2) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(passes):
        out.append([torch.cat([x.flatten(1), y[:, None].float()], 1)
                    for x, y in split.batches(3, shuffle=True, augment=Augment(), generator=g, drop_last=True)])
    return out


def test_default_workers_follow_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_workers() == max(0, min(8, cores - 1))
    for cfg in (TeacherConfig(), DistillConfig(), EvalConfig()):
        assert cfg.workers == default_workers()
    assert TeacherConfig(workers=0).workers == 0


@pytest.mark.parametrize("config", [TeacherConfig, DistillConfig, EvalConfig])
def test_negative_workers_are_refused_by_the_library(config) -> None:
    with pytest.raises(ValueError, match="workers"):
        config(workers=-1)


@pytest.mark.parametrize("args", [
    ("teacher", "train", "--dataset", "synthetic", "--workers", "-1"),
    ("eval", "nothing.safetensors", "--workers", "-2"),
])
def test_negative_workers_is_one_line_exit_2_nothing_written(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = tmp_path / "t.safetensors"
    assert_one_error_line(*run(*args, *(("--out", out) if args[0] == "teacher" else ())), 2, "--workers")
    assert listing(tmp_path) == set()


def test_workers_are_safe_to_change_on_resume(tmp_path: Path) -> None:
    old = {"epochs": 3, "lr": 0.1, "workers": 4}
    assert resume_changes(tmp_path / "c", old, {**old, "workers": 0}, 1) == {"workers": 4}
    assert resume_changes(tmp_path / "c", {"epochs": 3}, {"epochs": 3, "workers": 2}, 1) == {}  # written before


def test_image_folder_draws_do_not_depend_on_the_workers(folder: Path) -> None:
    one, two = _passes(_split(folder, 0), seed=3), _passes(_split(folder, 1), seed=3)
    assert len(one[0]) == 3  # 10 images, batches of 3, the last one dropped
    for a, b in zip(one, two, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(one[0], one[1], strict=True))  # each pass draws anew


def test_image_folder_keeps_one_loader_across_passes(folder: Path) -> None:
    split = _split(folder, 1)
    loader = split.loader()
    assert loader.persistent_workers and loader.num_workers == 1
    _passes(split, seed=0)
    assert split.loader() is loader
    assert split.subset(torch.arange(4)).loader() is not loader  # a validation split has its own
    whole = [x for x, _ in split.batches(3)]
    next(iter(split.batches(3)))  # a pass abandoned after one batch (eval's speed check)
    again = [x for x, _ in split.batches(3)]
    assert len(again) == len(whole) and all(torch.equal(x, y) for x, y in zip(whole, again, strict=True))


def test_image_folder_resumes_with_the_generator(folder: Path) -> None:
    """A run restarted from the generator's state after pass 1 draws pass 2 exactly as the whole run did."""
    whole = _passes(_split(folder, 1), seed=5)
    g = torch.Generator().manual_seed(5)
    list(_split(folder, 0).batches(3, shuffle=True, augment=Augment(), generator=g, drop_last=True))
    state = g.get_state()
    g2 = torch.Generator()
    g2.set_state(state)
    again = [torch.cat([x.flatten(1), y[:, None].float()], 1)
             for x, y in _split(folder, 1).batches(3, shuffle=True, augment=Augment(), generator=g2, drop_last=True)]
    assert all(torch.equal(x, y) for x, y in zip(whole[1], again, strict=True))


def test_evaluation_pass_is_the_eval_transform(folder: Path) -> None:
    split = _split(folder, 0)
    a = [x for x, _ in split.batches(4)]
    b = [x for x, _ in split.batches(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert sum(len(x) for x in a) == 10


def test_pin_memory_and_workers_follow_the_device(folder: Path) -> None:
    split = _split(folder, 0)
    on_cuda = split_on(split, torch.device("cuda"), 2)  # chooses, without touching a GPU
    assert (on_cuda.workers, on_cuda.pin_memory) == (2, True)
    assert on_cuda.loader().pin_memory and on_cuda.loader().persistent_workers
    on_cpu = split_on(split, torch.device("cpu"), 0)
    assert (on_cpu.workers, on_cpu.pin_memory) == (0, False)
    assert on_cpu is split  # already so: the same split and loader
    assert not on_cpu.loader().persistent_workers
    assert split_on(split, torch.device("cpu")).workers == default_workers()


def test_in_memory_data_stays_put_on_the_cpu() -> None:
    info = DATASETS["synthetic"]
    split = TensorSplit(torch.rand(6, 3, 16, 16), torch.arange(6) % 4, info)
    assert split_on(split, torch.device("cpu")) is split


@CUDA
def test_in_memory_data_moves_to_the_gpu_once_with_the_same_draws() -> None:
    from enofctl.data import load_dataset

    data = load_dataset("synthetic")
    cuda = data_on(data, torch.device("cuda"), 0)
    assert cuda.train.x.is_cuda and data_on(cuda, torch.device("cuda"), 0).train is cuda.train
    aug = Augment(cutout=4)
    for (xc, yc), (x, y) in zip(
            cuda.train.batches(32, shuffle=True, augment=aug, generator=torch.Generator().manual_seed(1)),
            data.train.batches(32, shuffle=True, augment=aug, generator=torch.Generator().manual_seed(1)),
            strict=True):
        assert torch.equal(xc.cpu(), x) and torch.equal(yc.cpu(), y)


@CUDA
def test_augmentation_runs_on_gpu_tensors_with_the_cpu_draws() -> None:
    x = torch.rand(5, 3, 8, 8)
    for fn in (lambda t, g: augment_batch(t, 2, True, g), lambda t, g: cutout(t, 3, g)):
        a = fn(x, torch.Generator().manual_seed(0))
        b = fn(x.cuda(), torch.Generator().manual_seed(0))
        assert b.is_cuda and torch.equal(a, b.cpu())


def test_ablation_cells_are_not_retrained_for_another_worker_count(monkeypatch, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from enofctl.stages import ablate

    cfg = DistillConfig(workers=0, log_every=50)
    fake = SimpleNamespace(manifest=SimpleNamespace(config={**cfg.model_dump(), "workers": 7, "log_every": 5}))
    monkeypatch.setattr(ablate.artifacts, "load", lambda *a, **k: fake)
    assert ablate._finished(tmp_path / "cell.safetensors", cfg) is fake.manifest
    fake.manifest.config["lr"] = 1.0
    assert ablate._finished(tmp_path / "cell.safetensors", cfg) is None


def test_bf16_on_a_gpu_without_it_is_a_usage_error(monkeypatch) -> None:
    from enofctl.errors import UsageError
    from enofctl.stages.common import check_recipe

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4: no bfloat16
    with pytest.raises(UsageError, match=r"^--amp uses bfloat16, which needs a GPU of compute capability 8\.0 or "
                                         r"newer \(this one is 7\.5\); drop --amp$"):
        check_recipe(TeacherConfig(amp=True), torch.device("cuda"), DATASETS["synthetic"])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    check_recipe(TeacherConfig(amp=True), torch.device("cuda"), DATASETS["synthetic"])


def test_teacher_on_an_image_folder_is_the_same_with_any_workers(folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from enofctl.stages import train_teacher

    root = tmp_path / "data"
    root.mkdir()
    for split in ("train", "val"):
        (root / split).symlink_to(folder, target_is_directory=True)
    weights = []
    for workers in (0, 1):
        cfg = TeacherConfig(dataset="imagefolder", data_dir=str(root), model="resnet20", model_kwargs={"width": 0.125},
                            epochs=1, batch_size=4, lr=0.01, device="cpu", eval_before=False, workers=workers)
        res = train_teacher(cfg, tmp_path / f"w{workers}.safetensors")
        assert res.manifest.config["workers"] == workers
        weights.append(load_file(res.path))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
