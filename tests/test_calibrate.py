"""Calibrated conversion of surrogate students: the per-channel neuron against the reference loop, the fit,
determinism, save/load, the calibrated student against the plain copy, distill's default path, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clihelp import QUICK, assert_one_error_line, ok, run
from hypothesis import given, settings
from hypothesis import strategies as st

from enofctl import artifacts
from enofctl.schema import NeuronSpec, SpikingSpec
from enofctl.spiking import make_spiking
from enofctl.spiking.calibrate import calibrate_student
from enofctl.spiking.neuron import SpikingNeuron, neuron_multistep, neuron_sequence

specs = st.builds(NeuronSpec, kind=st.sampled_from(["lif", "if"]), decay=st.sampled_from([0.25, 0.5, 1.0]),
                  reset=st.sampled_from(["hard", "soft"]), v_init=st.sampled_from([0.0, 0.5]),
                  surrogate=st.sampled_from(["rect", "triangle", "atan"]))


@settings(max_examples=40, deadline=None)
@given(spec=specs, T=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_per_channel_thresholds_equal_the_reference_loop(spec: NeuronSpec, T: int, seed: int) -> None:
    """The fast path with one threshold per channel: spikes bit for bit, gradients to rounding."""
    g = torch.Generator().manual_seed(seed)
    B, C = 2, 3
    x = torch.randn(T * B, C, 4, generator=g, dtype=torch.float64) + 0.5
    w = torch.randn(T * B, C, 4, generator=g, dtype=torch.float64)
    th = torch.rand(C, 1, generator=g, dtype=torch.float64) + 0.2  # [C, 1]: broadcasts over [B, C, 4]
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = neuron_multistep(x1.unflatten(0, (T, -1)), spec, v_th=th).flatten(0, 1)
    new = neuron_sequence(x2, spec, T, v_th=th)
    torch.testing.assert_close(new, ref, rtol=0, atol=0)
    (ref * w).sum().backward()
    (new * w).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-12, atol=1e-12)


def test_channel_neuron_emits_its_amplitude_and_uses_its_thresholds() -> None:
    n = SpikingNeuron(NeuronSpec(), T=2, scaling="channel", channels=2)
    n.v_th.copy_(torch.tensor([0.5, 1.2]))
    n.amp.copy_(torch.tensor([3.0, 7.0]))
    x = torch.ones(2 * 1, 2, 1, 1)  # T=2, B=1: current 1 in both channels
    out = n(x).flatten()
    assert out.tolist() == [3.0, 0.0, 3.0, 7.0]  # ch0 fires at every step; ch1 at the second (1.25 > 1.2)
    assert {k for k in n.state_dict()} == {"v_th", "amp"}


def test_ops_count_the_events_of_channel_scaled_spikes() -> None:
    """A calibrated student's spikes carry per-channel amplitudes: still events (SOPs), as many as with 1."""
    from enofctl.ops import OpsMeter

    class Body(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = SpikingNeuron(NeuronSpec(), T=2, scaling="channel", channels=4)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.act(x).flatten(1))  # the classifier reads a view of the spikes

    x = torch.tensor([[0.1, 0.6, 0.9, 2.0]]).repeat(2 * 3, 1)  # T=2 steps of B=3 identical samples
    counts = []
    for amp in ([1.0, 1.0, 1.0, 1.0], [2.0, 3.0, 0.5, 7.0]):
        body = Body()
        body.act.amp.copy_(torch.tensor(amp))
        with OpsMeter(body) as meter:
            body(x)
        counts.append((meter.sops["fc"], meter.macs["fc"], meter.input_kind("fc")))
    spikes = 2 * 3 * 3  # channels 1..3 fire at both steps (> 0.5), channel 0 never
    assert counts[0] == counts[1] == (spikes * 3, 0, "spikes")


def _tiny_pair(seed: int = 0):
    from enofctl.models import build_model

    torch.manual_seed(seed)
    ann = build_model("resnet20", 4, 3, {"width": 0.125}).eval()
    with torch.no_grad():  # BN statistics that are not the identity, as after training
        for m in ann.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-0.2, 0.2)
    return ann, make_spiking(ann, SpikingSpec(T=4, scaling="channel"), (3, 16, 16)).eval()


def test_calibration_is_deterministic_and_records_every_layer() -> None:
    batches = [torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    ann, a = _tiny_pair()
    _, b = _tiny_pair()
    ra = calibrate_student(a, ann, batches)
    rb = calibrate_student(b, ann, batches)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [la.name for la in ra.layers] == list(a.neurons()) == [lb.name for lb in rb.layers]
    for layer in ra.layers:  # the fit never ends worse than the spec's threshold with amplitude 1
        assert layer.error_after <= layer.error_before + 1e-9
    assert ra.samples == 32 and ra.T == 4 and ra.agreement_after is not None


def test_calibration_needs_a_channel_student() -> None:
    from enofctl.models import build_model

    ann = build_model("resnet20", 4, 3, {"width": 0.125}).eval()
    plain = make_spiking(ann, SpikingSpec(T=2), (3, 16, 16))
    with pytest.raises(ValueError, match="scaling"):
        calibrate_student(plain, ann, [torch.zeros(2, 3, 16, 16)])


# ----------------------------------------------------------------------------------------------------------
# through the stages and the CLI (a tiny synthetic teacher)


@pytest.fixture(scope="module")
def teacher(tiny_teacher: Path) -> Path:
    """teacher train --dataset synthetic with TINY, shared with the CLI pipeline (conftest.py)."""
    return tiny_teacher


def _top1(path: Path, T: int = 4) -> float:
    return json.loads(ok("eval", path, "--T", str(T), "--json", "--speed-batches", "0"))["top1"]


def test_calibrated_student_is_not_worse_than_the_plain_copy(teacher: Path, tmp_path: Path) -> None:
    plain, cal = tmp_path / "plain.safetensors", tmp_path / "cal.safetensors"
    ok("convert", teacher, "--T", "4", "--no-calibrate", "--out", plain)
    ok("convert", teacher, "--T", "4", "--calibrate", "2", "--batch-size", "64", "--out", cal)
    assert artifacts.load(plain).manifest.spiking.scaling == "none"
    assert _top1(cal) >= _top1(plain)


def test_per_channel_values_survive_save_and_load_and_act_in_eval(teacher: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    # the calibrated buffers are under test, not the reconstruction steps after them (test_fold.py): left out
    opts = ("--T", "4", "--calibrate", "2", "--batch-size", "64", "--no-fold", "--reconstruct", "0")
    ok("convert", teacher, *opts, "--out", a)
    ok("convert", teacher, *opts, "--out", b)
    art = artifacts.load(a)
    assert art.manifest.tensors_sha256 == artifacts.load(b).manifest.tensors_sha256  # deterministic for a seed
    cal = art.manifest.calibration
    assert cal is not None and cal.samples == 128 and len(cal.layers) == len(art.build().neurons())
    student = art.build()
    for name, neuron in student.neurons().items():
        assert torch.equal(neuron.v_th, art.tensors[f"{name}.v_th"])
        assert torch.equal(neuron.amp, art.tensors[f"{name}.amp"])
    # the same weights with the thresholds and amplitudes reset score otherwise: the buffers act in eval
    reset = {k: (torch.full_like(v, 0.5) if k.endswith(".v_th") else torch.ones_like(v) if k.endswith(".amp")
                 else v) for k, v in art.tensors.items()}
    plain = tmp_path / "reset.safetensors"
    artifacts.save(plain, art.manifest.model_copy(deep=True), reset)
    assert _top1(plain) != _top1(a) or _top1(a, 2) != _top1(plain, 2)
    other = tmp_path / "seed1.safetensors"
    ok("convert", teacher, *opts, "--seed", "1", "--out", other)
    assert artifacts.load(other).manifest.tensors_sha256 != art.manifest.tensors_sha256


def test_distill_starts_from_the_calibrated_student_by_default(pipe, teacher: Path, tmp_path: Path) -> None:
    plain = tmp_path / "p.safetensors"
    # the pipeline's `distill --teacher t --T 2 --epochs 1 --limit-train 64` (its defaults: calibrated, reconstructed)
    assert pipe.teacher == teacher
    m = artifacts.load(pipe.student2).manifest
    assert m.spiking.scaling == "none" and m.calibration.folded and m.config["calibrate"] == 8
    assert m.history[0]["epoch"] == 0  # the accuracy before the first step: the calibrated start
    ok("distill", "--teacher", teacher, "--T", "2", "--epochs", "1", "--limit-train", "64", "--no-calibrate",
       "--quiet", "--out", plain)
    assert artifacts.load(plain).manifest.spiking.scaling == "none"


@pytest.mark.parametrize("args,code,needle", [
    (["--calibrate", "-1"], 2, "--calibrate"),
    (["--calibrate", "0"], 2, "--no-calibrate"),
    (["--calibrate", "x"], 2, "--calibrate"),
    (["--calibrate", "2", "--no-calibrate"], 2, "not both"),
    (["--percentile", "0"], 2, "percentile"),
    (["--spiking-pool"], 2, "--method cq"),
])
def test_bad_calibration_options(teacher: Path, tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    out = tmp_path / "s.safetensors"
    assert_one_error_line(*run("convert", teacher, *args, "--out", out), code, needle)
    assert not out.exists()


def test_calibration_data_not_available_is_one_line(teacher: Path, tmp_path: Path) -> None:
    """A teacher of a dataset whose files are not here: the calibration cannot read its images."""
    art = artifacts.load(teacher)
    m = art.manifest.model_copy(update={"data": art.manifest.data.model_copy(
        update={"dataset": "mnist", "data_dir": str(tmp_path / "nowhere")})}, deep=True)
    moved = tmp_path / "t_mnist.safetensors"
    artifacts.save(moved, m, art.tensors)
    out = tmp_path / "s.safetensors"
    assert_one_error_line(*run("convert", moved, "--out", out), 1, "mnist")
    assert not out.exists()
    ok("convert", moved, "--no-calibrate", "--out", out)  # the plain copy needs no data


def test_non_finite_calibration_is_refused(teacher: Path, tmp_path: Path) -> None:
    art = artifacts.load(teacher)
    tensors = dict(art.tensors)
    first = next(k for k in tensors if k.endswith("weight") and tensors[k].dim() == 4)
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    bad = tmp_path / "nan.safetensors"
    artifacts.save(bad, art.manifest.model_copy(deep=True), tensors)
    out = tmp_path / "s.safetensors"
    assert_one_error_line(*run("convert", bad, "--out", out), 1, "non-finite")
    assert_one_error_line(*run("convert", bad, "--no-calibrate", "--out", out), 1, "non-finite")
    assert not out.exists()


def _norm_state(art: artifacts.Artifact) -> dict[str, torch.Tensor]:
    return {k: v for k, v in art.tensors.items() if k.endswith(("running_mean", "running_var"))}


def test_frozen_bn_keeps_the_calibrated_statistics_and_trains_the_rest(teacher: Path, tmp_path: Path) -> None:
    """--bn frozen: the running statistics the student was calibrated with come out unchanged, the weights
    (BatchNorm's scale and shift included) do train; --bn batch updates the statistics."""
    start, frozen, batch = (tmp_path / f"{n}.safetensors" for n in ("start", "frozen", "batch"))
    ok("convert", teacher, "--T", "2", "--calibrate", "1", "--batch-size", "64", "--reconstruct", "0", "--out", start)
    for out, bn in ((frozen, "frozen"), (batch, "batch")):
        ok("distill", "--teacher", teacher, "--student", start, *QUICK, "--bn", bn, "--quiet", "--out", out)
    s0, sf, sb = (artifacts.load(p) for p in (start, frozen, batch))
    assert sf.manifest.config["bn"] == "frozen" and sb.manifest.config["bn"] == "batch"
    stats0 = _norm_state(s0)
    assert stats0 and all(torch.equal(v, _norm_state(sf)[k]) for k, v in stats0.items())
    assert not all(torch.equal(v, _norm_state(sb)[k]) for k, v in stats0.items())
    trained = [k for k, v in s0.tensors.items() if k.endswith(".weight") and not torch.equal(v, sf.tensors[k])]
    assert any(".bn" in k or "stem.1" in k for k in trained) and any("conv" in k for k in trained)


def test_train_mode_with_frozen_norm_leaves_only_batchnorm_in_eval() -> None:
    from enofctl.stages.loop import train_mode

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2), torch.nn.Dropout(0.5))
    net.eval()
    train_mode(net, frozen_norm=True)
    assert [m.training for m in net] == [True, False, True] and net.training
    train_mode(net)
    assert all(m.training for m in net)


def test_bad_bn_option_is_a_usage_error(teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.safetensors"
    assert_one_error_line(*run("distill", "--teacher", teacher, "--bn", "running", "--out", out), 2, "--bn")
    assert not out.exists()
