"""BatchNorm's running statistics recomputed after each epoch (`models.norm.recompute_bn`, `--bn-recompute`):
the exact statistics of the batches, the rest of the model untouched, and the event teacher that scored chance
with the moving averages of 10 steps and 100 % with its own weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from enofctl.models.norm import recompute_bn


def test_recompute_bn_is_the_exact_statistics_of_the_batches() -> None:
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5)).eval()
    net[1].momentum = 0.3
    xs = [torch.randn(5, 2, 6, 6) * (i + 1) for i in range(3)]
    assert recompute_bn(net, xs) == 3
    h = torch.cat([net[0](x) for x in xs]).detach()  # [15, 3, 4, 4]
    per_batch = [net[0](x).detach().transpose(0, 1).flatten(1) for x in xs]
    # BatchNorm keeps the unbiased variance of each batch; momentum None averages the batches equally
    want_var = torch.stack([b.var(1, unbiased=True) for b in per_batch]).mean(0)
    torch.testing.assert_close(net[1].running_mean, h.transpose(0, 1).flatten(1).mean(1))
    torch.testing.assert_close(net[1].running_var, want_var)
    assert net[1].momentum == 0.3 and not net[1].training and not net[3].training  # modes and momentum kept


def test_recompute_bn_without_batches_keeps_the_statistics() -> None:
    bn = nn.BatchNorm1d(4)
    bn.running_var.fill_(2.0)
    assert recompute_bn(bn, []) == 0
    assert torch.equal(bn.running_var, torch.full((4,), 2.0)) and int(bn.num_batches_tracked) == 0


def _band_nmnist(root, per_class: int, seed: int = 0) -> None:
    """An N-MNIST tree where class k's events lie in horizontal band k and drift right over the recording."""
    from test_events import write_nmnist

    rng = np.random.default_rng(seed)
    for split in ("Train", "Test"):
        for c in range(10):
            for i in range(per_class):
                t = np.sort(rng.integers(0, 300_000, 300))
                x = np.clip((t / 300_000 * 30).astype(int) + rng.integers(0, 4, 300), 0, 33)
                y = np.clip(3 * c + rng.integers(0, 3, 300), 0, 33)
                p = rng.integers(0, 2, 300)
                write_nmnist(root / split / str(c) / f"{i:05d}.bin", *[list(map(int, a)) for a in (x, y, t, p)])


@pytest.mark.parametrize("recompute", [32, 0])
def test_event_teacher_is_evaluated_with_the_statistics_of_its_own_frames(tmp_path, monkeypatch, recompute) -> None:
    """Few steps (5 epochs of 2 batches): the moving averages still hold 0.9^10 = 35 % of their start
    (variance 1 against ~0.01 of the frames), so eval mode scored chance where batch mode scores ~100 %."""
    pytest.importorskip("tonic", reason="event datasets need tonic: pip install -e '.[events]'")
    from enofctl.data import load_dataset
    from enofctl.schema import FrameSpec
    from enofctl.spiking import logits_of
    from enofctl.stages.common import accuracy, batches_on
    from enofctl.stages.loop import train_mode
    from enofctl.stages.teacher import TeacherConfig, teach

    monkeypatch.setenv("ENOFCTL_CACHE", str(tmp_path / "cache"))
    _band_nmnist(tmp_path / "nm", per_class=4)
    frames = FrameSpec(T=4, size=(17, 17))
    data = load_dataset("nmnist", tmp_path / "nm", frames=frames)
    cfg = TeacherConfig(dataset="nmnist", data_dir=str(tmp_path / "nm"), frames=frames, epochs=5, batch_size=20,
                        lr=0.1, augment=False, model_kwargs={"width": 0.125}, bn_recompute=recompute,
                        eval_before=False, workers=0)
    trained = teach(cfg, data)
    model, spec = trained.model.eval(), trained.manifest.model
    cpu = torch.device("cpu")
    eval_mode = accuracy(model, data.train, cpu, spec.mean, spec.std)["top1"]
    x, y = next(batches_on(data.train, cpu, spec.mean, spec.std, batch_size=len(data.train)))
    train_mode(model)  # batch statistics: each BatchNorm normalizes with the statistics of these very frames
    with torch.no_grad():
        batch_mode = float((logits_of(model, x).argmax(1) == y).float().mean())
    model.eval()
    assert batch_mode >= 0.9  # the weights have learned the bands
    if recompute:
        assert abs(eval_mode - batch_mode) <= 0.01 + 1e-9
        assert trained.manifest.metrics.top1 >= 0.9
    else:  # the bug this guards against: without recomputation the saved statistics are not the frames'
        assert eval_mode < batch_mode - 0.2
