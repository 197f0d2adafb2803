"""Event encoding: the student takes frame t at step t, the teacher averages its logits over the frames,
`eval` counts event input as accumulates, and the pipeline runs end to end on a tiny N-MNIST tree."""

from __future__ import annotations

import json

import pytest
import torch

from enofctl.models import build_model
from enofctl.ops import OpsMeter, conv_sops
from enofctl.schema import SCHEMA_VERSION, SpikingSpec, upgrade
from enofctl.spiking import ann_forward_with_feature, fold_frames, logits_of, make_spiking


def _ann(in_chans: int = 2):
    return build_model("resnet20", 4, in_chans, {"width": 0.125}).eval()


def test_fold_frames_is_time_major() -> None:
    x = torch.randn(3, 4, 2, 5, 5)  # [B, T, C, H, W]
    folded = fold_frames(x)
    assert folded.shape == (12, 2, 5, 5)
    for t in range(4):
        for b in range(3):
            assert torch.equal(folded[t * 3 + b], x[b, t])


def test_teacher_averages_logits_and_feature_over_frames() -> None:
    ann, x = _ann(), torch.rand(3, 4, 2, 16, 16)
    per_frame = torch.stack([ann(x[:, t]) for t in range(4)])  # [T, B, K]
    assert torch.allclose(logits_of(ann, x), per_frame.mean(0), atol=1e-5)
    z, f = ann_forward_with_feature(ann, x)
    feats = torch.stack([ann.forward_head(ann.forward_features(x[:, t]), pre_logits=True) for t in range(4)])
    assert torch.allclose(z, per_frame.mean(0), atol=1e-5) and torch.allclose(f, feats.mean(0), atol=1e-5)
    image = x[:, 0]
    assert torch.equal(logits_of(ann, image), ann(image))  # images: unchanged


def test_event_student_on_repeated_frames_is_the_direct_student() -> None:
    ann = _ann()
    direct = make_spiking(ann, SpikingSpec(T=3), (2, 16, 16)).eval()
    event = make_spiking(ann, SpikingSpec(T=3, encoding="event"), (2, 16, 16)).eval()
    assert direct.stem_once and not event.stem_once
    img = torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        assert torch.allclose(event(img.unsqueeze(1).expand(2, 3, 2, 16, 16)), direct(img), atol=1e-5)


def test_event_student_sees_a_different_frame_at_each_step() -> None:
    net = make_spiking(_ann(), SpikingSpec(T=2, encoding="event"), (2, 16, 16)).eval()
    frames = torch.rand(2, 2, 2, 16, 16) * 3
    with torch.no_grad():
        forward, backward = net(frames), net(frames.flip(1))  # the leak makes the order matter
    assert not torch.allclose(forward, backward)
    with pytest.raises(Exception, match=r"takes \[B, 2, C, H, W\]"):
        net(torch.rand(2, 2, 16, 16))


def test_event_input_is_counted_as_accumulates_per_event() -> None:
    net = make_spiking(_ann(), SpikingSpec(T=2, encoding="event"), (2, 16, 16)).eval()
    counts = torch.zeros(1, 2, 2, 16, 16)
    counts[0, 0, 1, 8, 8] = 3  # three ON events at an inner pixel in frame 0
    counts[0, 1, 0, 0, 0] = 1  # one OFF event at a corner in frame 1
    first = net.body.stem[0]
    with OpsMeter(net) as meter, torch.no_grad():
        net(counts)
    name = next(n for n, m in net.body.named_modules() if m is first)
    assert meter.input_kind(name) == "spikes" and meter.macs[name] == 0
    assert meter.sops[name] == conv_sops(first, fold_frames(counts))
    k = first.kernel_size[0] * first.kernel_size[1]
    assert meter.sops[name] == 3 * k * first.out_channels + 4 * first.out_channels  # interior 9, corner 4 reach


def test_schema_2_students_upgrade_to_direct_encoding() -> None:
    raw = {"schema_version": 2, "kind": "student", "spiking": {"T": 4}}
    up = upgrade(raw)
    assert up["schema_version"] == SCHEMA_VERSION and up["spiking"]["encoding"] == "direct"
    assert SpikingSpec(encoding="event").model_dump()["encoding"] == "event"


# ----------------------------------------------------------------------------------------------------------
# the CLI, end to end, on a tiny N-MNIST tree


@pytest.fixture
def nmnist(tmp_path, monkeypatch):
    pytest.importorskip("tonic", reason="event datasets need tonic: pip install -e '.[events]'")
    from test_events import make_nmnist

    monkeypatch.setenv("ENOFCTL_CACHE", str(tmp_path / "cache"))
    return make_nmnist(tmp_path / "nm", per_class=2, size=34)


def _run(*args):
    from typer.testing import CliRunner

    from enofctl.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _error(expect_code: int, *args, needle: str) -> None:
    """Through the real entry point (its error map): one line on stderr with ``needle``, the exit code."""
    from clihelp import assert_one_error_line, run

    assert_one_error_line(*run(*args), expect_code, needle)


def test_pipeline_on_events_end_to_end(nmnist, tmp_path) -> None:
    t, s0, s = tmp_path / "t.safetensors", tmp_path / "s0.safetensors", tmp_path / "s.safetensors"
    r = _run("teacher", "train", "--dataset", "nmnist", "--data-dir", nmnist, "--frames", 2, "--event-size", 16,
             "--width", 0.125, "--epochs", 1, "--batch-size", 8, "--out", t, "--quiet")
    assert r.exit_code == 0, r.output
    r = _run("convert", t, "--T", 2, "--calibrate", 1, "--batch-size", 8, "--out", s0)
    assert r.exit_code == 0, r.output
    r = _run("distill", "--teacher", t, "--student", s0, "--epochs", 1, "--batch-size", 8, "--out", s, "--quiet")
    assert r.exit_code == 0, r.output
    from enofctl import artifacts

    m = artifacts.load(s).manifest
    assert m.spiking.encoding == "event" and m.data.frames.T == 2 and m.data.frames.size == (16, 16)
    assert artifacts.load(t).manifest.data.frames.T == 2
    r = _run("eval", t, s, "--T", "1,3", "--speed-batches", 0, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    student = out["results"][1]
    assert [run["T"] for run in student["runs"]] == [1, 3]
    first = student["runs"][0]["ops"][0]
    assert first["input_kind"] == "spikes" and first["macs_per_sample"] == 0


def test_event_bad_input_one_line_and_nothing_written(nmnist, tmp_path) -> None:
    out = tmp_path / "t.safetensors"
    base = ("teacher", "train", "--dataset", "nmnist", "--width", 0.125, "--epochs", 1, "--out", out, "--quiet")
    _error(2, *base, "--data-dir", tmp_path / "nowhere", needle="no such directory")  # a usage error
    _error(1, *base, "--data-dir", nmnist, "--frames", 1000, "--bins", "count", needle="lower --T")
    _error(2, "teacher", "train", "--dataset", "digits", "--frames", 4, "--out", out, needle="event datasets")
    (nmnist / "Test" / "4").rename(tmp_path / "moved")
    _error(1, *base, "--data-dir", nmnist, needle="missing class folder")
    (tmp_path / "moved").rename(nmnist / "Test" / "4")
    f = next((nmnist / "Train" / "5").iterdir())
    f.write_bytes(f.read_bytes()[:-1])
    _error(1, *base, "--data-dir", nmnist, needle="truncated")
    assert not out.exists() and not list(tmp_path.glob("*.safetensors*"))
