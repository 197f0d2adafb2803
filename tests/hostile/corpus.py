"""Hostile inputs and option sets, each with the exit code and the words its one error line must hold.

A case's ``make(ctx)`` builds what it needs under ``ctx.dir`` and returns the command's arguments. The shared
pipeline (a tiny synthetic teacher and students) is ``ctx.pipe``; it is only read.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from clihelp import QUICK, TINY, Pipeline
from safetensors.torch import load_file, save_file

from enofctl import artifacts


@dataclass
class Ctx:
    dir: Path
    pipe: Pipeline

    @property
    def out(self) -> Path:
        return self.dir / "out.safetensors"


@dataclass
class Case:
    name: str
    make: Callable[[Ctx], tuple]
    code: int
    needles: tuple[str, ...] = ()


TRAIN = ("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--device", "cpu", "--quiet")
RESUME = (*TRAIN, "--resume")


# ----------------------------------------------------------------------------------------------------------
# hostile files


def header_file(path: Path, header: str) -> Path:
    """A file that starts like safetensors: an 8-byte length and ``header``."""
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode())
    return path


def deep_header(c: Ctx) -> Path:
    return header_file(c.dir / "deep.safetensors", '{"a":' * 5000 + "1" + "}" * 5000)


def long_int_header(c: Ctx) -> Path:
    entry = '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,' + "9" * 5000 + "]}}"
    return header_file(c.dir / "digits.safetensors", entry)


def deep_manifest(c: Ctx) -> Path:
    """A real safetensors file whose manifest (with a matching sha256) nests 5,000 deep."""
    text = "[" * 5000 + "]" * 5000
    path = c.dir / "deep_manifest.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata=artifacts.manifest_metadata(text))
    return path


def fifo(c: Ctx, name: str = "pipe") -> Path:
    path = c.dir / name
    os.mkfifo(path)
    return path


def forged_input_size(c: Ctx) -> Path:
    """The pipeline's teacher with a manifest (re-sealed) whose input has 4 channels: the model cannot run it."""
    art = artifacts.load(c.pipe.teacher)
    model = art.manifest.model.model_copy(update={"input_size": (4, *art.manifest.model.input_size[1:])})
    path = c.dir / "forged.safetensors"
    artifacts.save(path, art.manifest.model_copy(update={"model": model}), load_file(str(c.pipe.teacher)))
    return path


def forged(c: Ctx, src: Path | None = None, tensors: dict | None = None, **model: object) -> Path:
    """The pipeline's teacher (or ``src``) re-signed with ``model`` fields changed and/or other ``tensors``: a
    manifest whose sha256 matches, describing something else."""
    src = src or c.pipe.teacher
    art = artifacts.load(src)
    spec = art.manifest.model.model_copy(update=model)
    path = c.dir / "forged.safetensors"
    artifacts.save(path, art.manifest.model_copy(update={"model": spec}),
                   load_file(str(src)) if tensors is None else tensors)
    return path


def digits_manifest(c: Ctx) -> Path:
    """The pipeline's teacher re-signed as a digits teacher (1x8x8, 10 classes); its tensors are not read before
    the dataset check."""
    art = artifacts.load(c.pipe.teacher)
    model = art.manifest.model.model_copy(update={"num_classes": 10, "in_chans": 1, "input_size": (1, 8, 8),
                                                  "mean": (0.5,), "std": (0.5,)})
    data = art.manifest.data.model_copy(update={"dataset": "digits", "classes": [str(i) for i in range(10)]})
    path = c.dir / "digits_teacher.safetensors"
    artifacts.save(path, art.manifest.model_copy(update={"model": model, "data": data}), load_file(str(c.pipe.teacher)))
    return path


def forged_kwargs(c: Ctx, **kwargs: object) -> Path:
    return forged(c, kwargs={**artifacts.load(c.pipe.teacher).manifest.model.kwargs, **kwargs})


def _load_cmd(cmd: str, path: Path, c: Ctx) -> tuple:
    """A command that loads ``path`` and would do cheap work with it."""
    return {"eval": ("eval", path, "--limit", "8"), "inspect": ("inspect", path, "--quiet"),
            "convert": ("convert", path, "--no-calibrate", "--out", c.out)}[cmd]


def copy_of(c: Ctx, src: Path, name: str) -> Path:
    path = c.dir / name
    path.write_bytes(src.read_bytes())
    return path


# checkpoints given to --resume (OUT.ckpt beside --out)


def checkpoint(c: Ctx, content: bytes) -> Path:
    (c.dir / "out.safetensors.ckpt").write_bytes(content)
    return c.out


def list_checkpoint(c: Ctx) -> Path:
    return checkpoint(c, pickle.dumps([1, 2, 3], protocol=4))  # torch warns about the protocol


def keyless_checkpoint(c: Ctx) -> Path:
    path = c.dir / "out.safetensors.ckpt"
    torch.save({"epoch": 1}, path)
    return c.out


def truncated_checkpoint(c: Ctx) -> Path:
    path = c.dir / "out.safetensors.ckpt"
    torch.save({"model": {"w": torch.zeros(1000)}, "epoch": 1}, path)
    path.write_bytes(path.read_bytes()[:700])
    return c.out


# MNIST-like IDX files (--dataset mnist --data-dir DIR)


def idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def mnist_dir(c: Ctx, labels: np.ndarray | None = None, cut: int = 0, test_images: int = 4) -> Path:
    """Four 28x28 training and test images in IDX files; ``labels`` replace the training labels, ``cut``
    bytes are cut off the training images."""
    d = c.dir / "mnist"
    d.mkdir()
    x = np.zeros((4, 28, 28), np.uint8)
    y = np.array([0, 1, 2, 3], np.uint8) if labels is None else labels.astype(np.uint8)
    images = idx(x)
    (d / "train-images-idx3-ubyte").write_bytes(images[: len(images) - cut])
    (d / "train-labels-idx1-ubyte").write_bytes(idx(y))
    (d / "t10k-images-idx3-ubyte").write_bytes(idx(np.zeros((test_images, 28, 28), np.uint8)))
    (d / "t10k-labels-idx1-ubyte").write_bytes(idx(np.zeros(4, np.uint8)))
    return d


def mnist(d: Path) -> tuple:
    return ("teacher", "train", "--dataset", "mnist", "--data-dir", d, *TINY, "--quiet")


def image_folder(c: Ctx) -> Path:
    """train/ and val/ with two classes of 8x8 PNGs; one training "image" is not an image."""
    from PIL import Image

    root = c.dir / "images"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / split / cls / f"{i}.png")
    (root / "train" / "b" / "corrupt.png").write_bytes(b"\x89PNG but not really")
    return root


def cifar_dir(c: Ctx) -> Path:
    """A torchvision CIFAR-10 python folder whose files are all there but fail the md5 check."""
    d = c.dir / "cifar" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"):
        (d / name).write_bytes(pickle.dumps({"not": "cifar"}))
    return d.parent


def teacher_copy(c: Ctx) -> Path:
    return copy_of(c, c.pipe.teacher, "t.safetensors")


def student_copy(c: Ctx) -> Path:
    return copy_of(c, c.pipe.student0, "s.safetensors")


# ----------------------------------------------------------------------------------------------------------

CASES = [
    # hostile headers and manifests: depth and size limits before parsing
    Case("header-nested-5000", lambda c: ("inspect", deep_header(c)), 1, ("nested deeper",)),
    Case("header-int-5000-digits", lambda c: ("inspect", long_int_header(c)), 1, ("digits",)),
    Case("manifest-nested-5000", lambda c: ("inspect", deep_manifest(c)), 1, ("nested deeper",)),
    Case("eval-header-nested", lambda c: ("eval", deep_header(c), "--json"), 1, ("nested deeper",)),
    # non-regular inputs are refused without opening (a FIFO would block forever)
    Case("inspect-fifo", lambda c: ("inspect", fifo(c)), 2, ("FIFO",)),
    Case("eval-fifo", lambda c: ("eval", fifo(c)), 2, ("FIFO",)),
    Case("convert-dev-null", lambda c: ("convert", "/dev/null", "--out", c.out), 2, ("character device",)),
    # a forged artifact whose model cannot run its own input size
    Case("forged-input-size-eval", lambda c: ("eval", forged_input_size(c), "--json", "--limit", "8"), 1,
         ("cannot run on its own input size",)),
    Case("forged-input-size-convert", lambda c: ("convert", forged_input_size(c), "--no-calibrate", "--out", c.out),
         1, ("cannot run on its own input size",)),
    # a re-signed manifest whose tensors do not fit its model: inspect --deep checks what every loading stage checks
    Case("forged-no-tensors-inspect", lambda c: ("inspect", forged(c, tensors={}), "--deep", "--quiet"), 1,
         ("tensors do not match", "missing")),
    Case("forged-no-tensors-eval", lambda c: ("eval", forged(c, tensors={}), "--limit", "8"), 1, ("missing",)),
    Case("forged-width-inspect", lambda c: ("inspect", forged_kwargs(c, width=0.25), "--deep", "--quiet"), 1,
         ("the model expects",)),
    Case("forged-width-inspect-json", lambda c: ("inspect", forged_kwargs(c, width=0.25), "--deep", "--json"), 1,
         ("the model expects",)),
    Case("forged-student-width-inspect", lambda c: ("inspect", forged(c, c.pipe.student, kwargs={"width": 0.25}),
                                                    "--deep", "--quiet"), 1, ("the model expects",)),
    Case("forged-input-size-inspect", lambda c: ("inspect", forged_input_size(c), "--deep", "--quiet"), 1,
         ("cannot run on its own input size",)),
    # a re-signed manifest naming a file (or URL, hub id) for timm to read: refused on load, naming the field
    *(Case(f"forged-kwarg-{key}-{cmd}", lambda c, key=key, value=value, cmd=cmd: _load_cmd(
        cmd, forged_kwargs(c, **{key: value}), c), 1, ("model.kwargs", key))
      for key, value in (("checkpoint_path", "evil.pt"), ("pretrained_cfg_overlay", {"file": "evil.pt"}),
                         ("pretrained", True), ("hf_hub_id", "evil/model"), ("url", "http://evil"))
      for cmd in (("eval", "convert", "inspect") if key == "checkpoint_path" else ("eval",))),
    Case("forged-kwarg-width-list", lambda c: ("eval", forged_kwargs(c, width=[0.125]), "--limit", "8"), 1,
         ("model.kwargs", "width")),
    Case("model-arg-pretrained-1", lambda c: (*TRAIN, "--model-arg", "pretrained=1", "--out", c.out), 2,
         ("pretrained", "not allowed")),
    Case("model-arg-string", lambda c: (*TRAIN, "--model-arg", "stem_type=deep", "--out", c.out), 2,
         ("stem_type", "numbers")),
    Case("fetch-model-arg-file", lambda c: ("teacher", "fetch", "resnet18", "--model-arg", "file=evil.pt",
                                            "--out", c.out), 2, ("file", "not allowed")),
    Case("model-arg-checkpoint-path", lambda c: (*TRAIN, "--model-arg", "checkpoint_path=evil.pt", "--out", c.out),
         2, ("checkpoint_path", "not allowed")),
    # options that pass a type check but cannot work: refused before any work
    Case("seed-negative", lambda c: (*TRAIN, "--seed", "-1", "--out", c.out), 2, ("--seed",)),
    Case("seed-2^32", lambda c: (*TRAIN, "--seed", "4294967296", "--out", c.out), 2, ("--seed",)),
    Case("workers-negative", lambda c: (*TRAIN, "--workers", "-1", "--out", c.out), 2, ("--workers",)),
    Case("distill-workers-negative", lambda c: ("distill", "--teacher", c.pipe.teacher, *QUICK, "--workers", "-1",
                                                "--out", c.out), 2, ("--workers",)),
    Case("eval-workers-negative", lambda c: ("eval", c.pipe.teacher, "--workers", "-1"), 2, ("--workers",)),
    Case("convert-seed-2^32", lambda c: ("convert", c.pipe.teacher, "--seed", "4294967296", "--out", c.out), 2,
         ("--seed",)),
    Case("width-inf", lambda c: (*TRAIN, "--width", "inf", "--out", c.out), 2, ("--width",)),
    Case("width-10000", lambda c: (*TRAIN, "--width", "10000", "--out", c.out), 2, ("--width",)),
    Case("model-arg-width-nan", lambda c: ("teacher", "train", "--dataset", "synthetic", "--model-arg", "width=NaN",
                                           "--out", c.out), 2, ("width", "finite")),
    Case("model-arg-width-10000", lambda c: ("teacher", "train", "--dataset", "synthetic", "--model-arg",
                                             "width=10000", "--out", c.out), 2, ("width",)),
    Case("model-arg-drop-rate-2", lambda c: (*TRAIN, "--model-arg", "drop_rate=2", "--out", c.out), 2,
         ("drop_rate",)),
    Case("batch-size-1-batchnorm", lambda c: (*TRAIN, "--batch-size", "1", "--out", c.out), 2, ("BatchNorm",)),
    Case("limit-train-1-batchnorm", lambda c: ("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train",
                                               "1", "--out", c.out), 2, ("BatchNorm",)),
    Case("distill-batch-size-1", lambda c: ("distill", "--teacher", c.pipe.teacher, *QUICK, "--batch-size", "1",
                                            "--out", c.out), 2, ("BatchNorm",)),
    Case("vit-on-16x16", lambda c: ("teacher", "train", "--dataset", "synthetic", "--model", "vit_tiny_patch16_224",
                                    "--epochs", "1", "--out", c.out), 2, ("cannot run",)),
    Case("lr-inf", lambda c: (*TRAIN, "--lr", "inf", "--out", c.out), 2, ("--lr", "finite")),
    Case("lr-nan", lambda c: (*TRAIN, "--lr", "nan", "--out", c.out), 2, ("--lr",)),
    Case("weight-decay-inf", lambda c: (*TRAIN, "--weight-decay", "inf", "--out", c.out), 2, ("--weight-decay",)),
    Case("surrogate-alpha-inf", lambda c: ("convert", c.pipe.teacher, "--surrogate-alpha", "inf", "--out", c.out),
         2, ("--surrogate-alpha",)),
    Case("distill-lr-inf", lambda c: ("distill", "--teacher", c.pipe.teacher, *QUICK, "--lr", "inf", "--out", c.out),
         2, ("--lr",)),
    Case("eval-e-mac-inf", lambda c: ("eval", c.pipe.teacher, "--e-mac", "inf"), 2, ("--e-mac",)),
    # --out must not destroy an input, a folder or a special file
    Case("convert-out-is-input", lambda c: ("convert", teacher_copy(c), "--out", c.dir / "t.safetensors"), 2,
         ("also an input",)),
    Case("distill-out-is-teacher", lambda c: ("distill", "--teacher", teacher_copy(c), *QUICK, "--out",
                                              c.dir / "t.safetensors"), 2, ("also an input",)),
    Case("distill-out-is-student", lambda c: ("distill", "--teacher", c.pipe.teacher, "--student", student_copy(c),
                                              *QUICK, "--out", c.dir / "s.safetensors"), 2, ("also an input",)),
    Case("train-out-is-init", lambda c: (*TRAIN, "--init", teacher_copy(c), "--out", c.dir / "t.safetensors"), 2,
         ("also an input",)),
    Case("out-is-fifo", lambda c: ("convert", c.pipe.teacher, "--out", fifo(c, "out.safetensors")), 2, ("FIFO",)),
    Case("out-is-dev-null", lambda c: ("convert", c.pipe.teacher, "--out", "/dev/null"), 2, ("character device",)),
    Case("checkpoint-is-directory", lambda c: (*TRAIN, "--out", _mkdir(c.dir / "out.safetensors.ckpt").parent /
                                               "out.safetensors"), 2, ("directory",)),
    # data
    Case("idx-truncated", lambda c: (*mnist(mnist_dir(c, cut=100)), "--out", c.out), 1, ("truncated",)),
    Case("idx-labels-out-of-range", lambda c: (*mnist(mnist_dir(c, labels=np.array([0, 1, 200, 3]))), "--out",
                                               c.out), 1, ("label 200", "out of range")),
    Case("idx-count-mismatch", lambda c: (*mnist(mnist_dir(c, test_images=3)), "--out", c.out), 1, ("labels",)),
    Case("image-folder-corrupt-image", lambda c: ("teacher", "train", "--dataset", "imagefolder", "--data-dir",
                                                  image_folder(c), "--model", "resnet20", *TINY, "--batch-size", "2",
                                                  "--quiet", "--out", c.out), 1,
         ("cannot read an image", "corrupt.png")),
    Case("eval-other-image-size", lambda c: ("eval", digits_manifest(c), "--dataset", "mnist", "--data-dir",
                                             mnist_dir(c)), 2, ("made for digits", "8x8", "28x28", "does not fit")),
    Case("data-dir-missing", lambda c: ("teacher", "train", "--dataset", "fashion-mnist", "--data-dir",
                                        c.dir / "nonexistent", *TINY, "--out", c.out), 2,
         ("--data-dir", "nonexistent", "no such directory")),
    Case("eval-data-dir-missing", lambda c: ("eval", c.pipe.teacher, "--dataset", "mnist", "--data-dir",
                                             c.dir / "nonexistent"), 2, ("--data-dir", "nonexistent")),
    Case("data-dir-is-a-file", lambda c: ("teacher", "train", "--dataset", "mnist", "--data-dir", teacher_copy(c),
                                          *TINY, "--out", c.out), 2, ("--data-dir", "not a directory")),
    Case("cifar-md5-mismatch", lambda c: ("teacher", "train", "--dataset", "cifar10", "--data-dir", cifar_dir(c),
                                          *TINY, "--out", c.out), 1, ("corrupted", "data_batch_1", "md5")),
    Case("idx-not-idx", lambda c: (*mnist(_junk_idx(c)), "--out", c.out), 1, ("IDX",)),
    # training checkpoints given to --resume
    Case("resume-empty-checkpoint", lambda c: (*RESUME, "--out", checkpoint(c, b"")), 1, ("empty",)),
    Case("resume-junk-checkpoint", lambda c: (*RESUME, "--out", checkpoint(c, b"\x00junk" * 50)), 1,
         ("not a readable training checkpoint",)),
    Case("resume-list-checkpoint", lambda c: (*RESUME, "--out", list_checkpoint(c)), 1, ("training checkpoint",)),
    Case("resume-keyless-checkpoint", lambda c: (*RESUME, "--out", keyless_checkpoint(c)), 1,
         ("not an enofctl training checkpoint",)),
    Case("resume-truncated-checkpoint", lambda c: (*RESUME, "--out", truncated_checkpoint(c)), 1,
         ("training checkpoint",)),
    Case("resume-fifo-checkpoint", lambda c: (*RESUME, "--out", fifo(c, "out.safetensors.ckpt").with_name(
        "out.safetensors")), 2, ("FIFO",)),
]


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _junk_idx(c: Ctx) -> Path:
    d = mnist_dir(c)
    (d / "train-labels-idx1-ubyte").write_bytes(json.dumps({"not": "idx"}).encode())
    return d
