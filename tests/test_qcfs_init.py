"""`teacher train --init RELU_TEACHER --act qcfs`: each QCFS clip starts where it quantizes its layer's ReLU
outputs with the least squared error (`--qcfs-clip fit`, the default), not at QCFS's 8 (`fixed`)."""

from __future__ import annotations

import json

import pytest
import torch
from clihelp import ok

from enofctl import artifacts
from enofctl.models.acts import QCFS, fitted_clip, qcfs_mse


def test_the_fitted_clip_has_the_least_error_of_its_grid() -> None:
    a = torch.relu(torch.randn(50_000))
    clip = fitted_clip(a, levels=4)
    top = float(a.max())
    assert 0 < clip < top
    assert all(qcfs_mse(a, clip, 4) <= qcfs_mse(a, top * (i + 1) / 64, 4) for i in range(64))
    assert qcfs_mse(a, clip, 4) < qcfs_mse(a, 8.0, 4) / 4
    # QCFS's own forward at that clip is the quantization scored
    q = QCFS(4, clip)
    assert torch.allclose(((q(a) - a) ** 2).mean(), torch.tensor(qcfs_mse(a, clip, 4)), rtol=1e-5)


def test_degenerate_outputs() -> None:
    assert fitted_clip(torch.zeros(100), levels=4) == 1.0  # a dead layer: any clip, the output is 0
    assert fitted_clip(torch.full((100,), 0.75), levels=4) == pytest.approx(0.75)  # one level, exactly


def test_a_relu_teacher_fine_tuned_to_qcfs_starts_from_fitted_clips(tiny_teacher, tmp_path) -> None:
    """Before its first step (the history's epoch 0), the fitted QCFS network is close to its ReLU teacher; the
    fixed clips of 8 lose half of it (here: 0.94 and 0.50 against 1.00)."""
    start, clips = {}, {}
    for how in ("fit", "fixed"):
        res = json.loads(ok("teacher", "train", "--dataset", "synthetic", "--init", tiny_teacher, "--act", "qcfs",
                            "--levels", "4", "--qcfs-clip", how, "--epochs", "1", "--lr", "1e-9", "--limit-train",
                            "64", "--batch-size", "32", "--out", tmp_path / f"{how}.safetensors", "--json", "--quiet"))
        art = artifacts.load(res["artifact"])
        assert art.manifest.config["qcfs_clip"] == how
        clips[how] = [float(m.clip.detach()) for m in art.build().modules() if isinstance(m, QCFS)]
        start[how] = art.manifest.history[0]["test_top1"]
    relu_top1 = artifacts.load(tiny_teacher).manifest.history[-1]["test_top1"]
    assert clips["fixed"] == pytest.approx([8.0] * len(clips["fixed"]), abs=1e-3)
    assert len(clips["fit"]) == len(clips["fixed"]) > 1 and all(0 < c < 8 for c in clips["fit"])
    assert start["fit"] >= relu_top1 - 0.1 and start["fit"] >= start["fixed"] + 0.2, (start, relu_top1)
