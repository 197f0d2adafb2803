"""CQ training and integrate-and-fire conversion: activations, BN folding, n-bit weights, the IF network
against the quantized ANN, bias calibration and data-based thresholds, and the CLI path teacher --act cq ->
convert --method cq -> eval/distill."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from clihelp import assert_one_error_line, ok, run
from hypothesis import given, settings
from hypothesis import strategies as st

from enofctl import artifacts
from enofctl.models import build_model
from enofctl.models.acts import QCFS, ClampQuant, apply_act
from enofctl.schema import ActSpec, Manifest, NeuronSpec, SpikingSpec
from enofctl.spiking import SpikingNet, make_spiking
from enofctl.spiking.bn import fold_bn_weights, rescale_bn
from enofctl.spiking.cq import calibrate_bias, fold_bn, if_neuron, make_if_snn, normalize_thresholds, quantize_weights
from enofctl.stages.convert import CQ_NEURON


def test_clamp_quant_levels_and_straight_through() -> None:
    x = torch.tensor([-0.5, 0.01, 0.06, 0.07, 0.5, 0.93, 1.2], requires_grad=True)
    y = ClampQuant(8)(x)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.0, 0.0, 0.125, 0.5, 0.875, 1.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]))  # clamp's gradient, STE


def test_qcfs_matches_formula() -> None:
    act = QCFS(4, clip=2.0)
    x = torch.linspace(-1, 3, 41)
    expected = 2.0 * torch.clamp(torch.floor(x * 4 / 2.0 + 0.5) / 4, 0, 1)
    torch.testing.assert_close(act(x), expected)
    x = x.clone().requires_grad_(True)
    act(x).sum().backward()
    assert act.clip.grad is not None and x.grad is not None


@settings(max_examples=60, deadline=None)
@given(x=st.floats(0.0, 1.0), q=st.sampled_from([1, 2, 4, 8, 16]))
def test_if_neuron_at_T_equals_Q_is_the_quantized_activation(x: float, q: int) -> None:
    """Constant input, T = Q, membrane from v_th/2: Q * rate = round(x Q) (away from the .5 ties)."""
    frac = x * q - int(x * q)
    if abs(frac - 0.5) < 1e-4:
        return
    neuron = if_neuron(CQ_NEURON, T=q, v_th=1.0)
    out = neuron(torch.full((q, 1), x))  # [T*B, 1] with B = 1
    assert out.mean().item() == pytest.approx(ClampQuant(q)(torch.tensor(x)).item(), abs=1e-6)


class _OneLayer(nn.Module):
    """timm contract: linear -> bounded activation; the 'feature' is the activation itself."""

    def __init__(self, act: nn.Module):
        super().__init__()
        self.lin, self.act, self.fc = nn.Linear(6, 5), act, nn.Identity()

    def forward_features(self, x):
        return self.act(self.lin(x))

    def forward_head(self, x, pre_logits=False):
        return x

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_single_layer_network_equals_quantized_ann_at_T_equals_Q() -> None:
    torch.manual_seed(0)
    q = 8
    ann = _OneLayer(ClampQuant(q)).eval()
    spec = SpikingSpec(T=q, neuron=CQ_NEURON, repact=False, method="cq")
    snn = SpikingNet(make_if_snn(ann, CQ_NEURON, q, (6,)), spec).eval()
    x = torch.rand(64, 6) * 2 - 0.5
    with torch.no_grad():
        torch.testing.assert_close(snn(x), ann(x), atol=1e-6, rtol=0)


def test_surrogate_student_with_the_if_neuron_is_the_cq_ann_at_T_equals_Q() -> None:
    """`convert`/`distill` with --decay 1 --v-th 1 --reset soft --v-init 0.5 on a CQ teacher: the trainable
    (surrogate) student starts as the exact conversion, and gradients reach the weights."""
    torch.manual_seed(0)
    q = 4
    ann = _OneLayer(ClampQuant(q)).eval()
    neuron = NeuronSpec(decay=1.0, v_th=1.0, reset="soft", v_init=0.5)
    snn = make_spiking(ann, SpikingSpec(T=q, neuron=neuron, repact=False), (6,)).eval()
    x = torch.rand(64, 6) * 2 - 0.5
    with torch.no_grad():
        torch.testing.assert_close(snn(x), ann(x), atol=1e-6, rtol=0)
    lif = make_spiking(ann, SpikingSpec(T=q, neuron=NeuronSpec(), repact=False), (6,)).eval()
    with torch.no_grad():  # the EnOF neuron (leak, hard reset, threshold 0.5) is not that conversion
        assert not torch.allclose(lif(x), ann(x), atol=1e-3)
    snn(x).sum().backward()
    assert snn.body.lin.weight.grad is not None and snn.body.lin.weight.grad.abs().sum() > 0


def test_conversion_gap_shrinks_with_T() -> None:
    """A random plain CNN: the IF network approaches the clamp ANN as T grows."""
    torch.manual_seed(0)
    ann = apply_act(build_model("vgg7", 4, 3, {"width": 0.0625}), ActSpec(kind="clamp")).eval()
    for m in ann.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    snn = SpikingNet(make_if_snn(ann, CQ_NEURON, 8, (3, 8, 8)), SpikingSpec(T=8, neuron=CQ_NEURON, repact=False,
                                                                            method="cq")).eval()
    x = torch.rand(16, 3, 8, 8)
    with torch.no_grad():
        ref = ann(x)
        gaps = []
        for T in (4, 16, 64, 256):
            snn.set_T(T)
            gaps.append((snn(x) - ref).abs().mean().item())
    assert gaps[-1] < gaps[0] / 4, gaps
    assert gaps[-1] < 0.05 * ref.abs().mean().item(), gaps


@pytest.mark.parametrize("name,kwargs,size", [("resnet20", {"width": 0.125}, (3, 16, 16)),
                                              ("vgg7", {"width": 0.0625}, (3, 8, 8))])
def test_bn_folding_keeps_outputs(name: str, kwargs: dict, size: tuple) -> None:
    torch.manual_seed(0)
    model = build_model(name, 5, 3, kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(4, *size)
    with torch.no_grad():
        before = model(x)
        folded = fold_bn(model, size)
        after = folded(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_fold_bn_refuses_nothing_it_cannot_pair() -> None:
    """A BN that does not read a conv's output (here: after a ReLU) stays."""
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.BatchNorm2d(3)).eval()
    fold_bn(m, (2, 5, 5))
    assert isinstance(m[2], nn.BatchNorm2d)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_fold_bn_weights_is_the_layer_then_its_batchnorm(affine: bool, bias: bool) -> None:
    torch.manual_seed(0)
    for layer, bn, x in ((nn.Conv2d(2, 3, 3, bias=bias), nn.BatchNorm2d(3, affine=affine), torch.randn(4, 2, 5, 5)),
                         (nn.Linear(6, 3, bias=bias), nn.BatchNorm1d(3, affine=affine), torch.randn(4, 6))):
        bn.eval()
        with torch.no_grad():
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.1, 2.0)
            if affine:
                bn.weight.normal_()
                bn.bias.normal_()
            ref = bn(layer(x))
            w, b = fold_bn_weights(layer.weight, layer.bias, bn, dtype=torch.float64)
            assert w.dtype == b.dtype == torch.float64
            layer.weight.copy_(w)
            layer.bias = nn.Parameter(b.float())
            torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


def test_rescale_bn_refuses_an_output_scale_without_affine_parameters() -> None:
    bn = nn.BatchNorm2d(3, affine=False).eval()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with pytest.raises(ValueError, match="affine"):
        rescale_bn(bn, torch.full((3,), 2.0), torch.full((3,), 2.0))
    assert all(torch.equal(v, before[k]) for k, v in bn.state_dict().items())  # nothing changed
    rescale_bn(bn, torch.full((3,), 2.0), torch.ones(3))  # the input side alone is fine
    torch.testing.assert_close(bn.running_mean, before["running_mean"] / 2)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_n_bit_weights_round_as_specified(bits: int) -> None:
    torch.manual_seed(0)
    step = 2.0 ** (1 - bits)
    lin = nn.Linear(16, 8)
    with torch.no_grad():
        lin.weight.uniform_(-0.9, 0.9)
    w = lin.weight.detach().clone()
    quantize_weights(lin, bits, normalize=False)
    expected = (torch.round(w / step) * step).clamp(-1, 1 - step)
    assert torch.equal(lin.weight, expected)
    # normalized: a per-layer grid of step * max|w|
    lin2 = nn.Linear(16, 8)
    w2 = lin2.weight.detach().clone()
    quantize_weights(lin2, bits, normalize=True)
    s = w2.abs().max()
    torch.testing.assert_close(lin2.weight, (torch.round(w2 / s / step) * step).clamp(-1, 1 - step) * s)
    assert len(torch.unique(lin2.weight)) <= 2**bits


# ----------------------------------------------------------------------------------------------------------
# data-driven steps after conversion: bias calibration, data-based thresholds


def _cq_spec(T: int) -> SpikingSpec:
    return SpikingSpec(T=T, neuron=CQ_NEURON, repact=False, method="cq")


def _random_cq_pair(seed: int, q: int = 4) -> tuple[nn.Module, SpikingNet]:
    """A random CQ vgg7 (non-trivial BN, mostly active units) and its IF network at T = Q."""
    torch.manual_seed(seed)
    ann = apply_act(build_model("vgg7", 4, 3, {"width": 0.0625}), ActSpec(kind="cq", levels=q)).eval()
    for m in ann.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(1.0, 3.0)
            m.bias.data.uniform_(0.0, 0.5)
    return ann, SpikingNet(make_if_snn(ann, CQ_NEURON, q, (3, 8, 8)), _cq_spec(q)).eval()


def test_calibration_leaves_an_exact_network_exact() -> None:
    """One layer fed a constant current: at T = Q the IF network already is the quantized ANN; calibration
    must not make it worse (the bias moves by rounding noise only)."""
    torch.manual_seed(0)
    q = 8
    ann = _OneLayer(ClampQuant(q)).eval()
    snn = SpikingNet(make_if_snn(ann, CQ_NEURON, q, (6,)), _cq_spec(q)).eval()
    rec = calibrate_bias(snn, ann, [torch.rand(32, 6) * 2 - 0.5 for _ in range(2)])
    assert [(layer.name, layer.bias_of) for layer in rec.layers] == [("act", "lin")]
    assert rec.layers[0].shift < 1e-6 and rec.layers[0].gap_after < 1e-6
    assert rec.classifier is None  # an Identity head has nothing to calibrate
    x = torch.rand(64, 6) * 2 - 0.5
    with torch.no_grad():
        torch.testing.assert_close(snn(x), ann(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bits", [None, 3])
def test_calibration_reduces_the_gap_to_the_quantized_ann(bits: int | None) -> None:
    """Every layer after the first is fed spikes, not a constant current, so even at T = Q the IF network
    misses the quantized ANN, partly systematically (unevenness error); with 3-bit weights it misses it by
    much more. Calibrated on some inputs, each layer's systematic offset is smaller on other inputs."""
    import copy

    ann, snn = _random_cq_pair(seed=0)
    if bits:
        quantize_weights(snn.body, bits)
    gen = torch.Generator().manual_seed(1)
    calib = [torch.rand(32, 3, 8, 8, generator=gen) for _ in range(4)]
    held_out = [torch.rand(64, 3, 8, 8, generator=gen) for _ in range(4)]
    before = calibrate_bias(copy.deepcopy(snn), ann, held_out, iterations=0)  # iterations=0: measure only
    with torch.no_grad():
        ref = torch.cat([ann(x) for x in held_out])
        logits_before = torch.cat([snn(x) for x in held_out])
    rec = calibrate_bias(snn, ann, calib, readout=bits is not None)
    after = calibrate_bias(copy.deepcopy(snn), ann, held_out, iterations=0)
    assert [layer.bias_of for layer in rec.layers] == ["features.0", "features.3", "features.7", "features.10",
                                                       "features.14", "features.17"]
    assert (rec.T, rec.samples, rec.bias_iterations) == (4, 128, 1)
    for b, a in zip(before.layers[1:], after.layers[1:], strict=True):
        assert a.offset_before < 0.8 * b.offset_before, (b, a)
    if bits:  # with the readout calibrated too, the logits on unseen inputs are much closer
        with torch.no_grad():
            logits_after = torch.cat([snn(x) for x in held_out])
            mean_logit_error = (ann(torch.cat(calib)) - snn(torch.cat(calib))).mean(0)
        assert (logits_after - ref).abs().mean() < 0.5 * (logits_before - ref).abs().mean()
        assert rec.logit_gap_after < 0.5 * rec.logit_gap_before
        assert rec.classifier == "fc" and mean_logit_error.abs().max().item() < 1e-4  # no class is off on average
    else:
        assert before.layers[0].gap_before < 1e-6  # the first layer sees a constant current: exact
        assert rec.classifier is None


def test_data_based_thresholds_for_relu_and_a_no_op_for_clamped() -> None:
    torch.manual_seed(0)
    T = 16
    relu = _OneLayer(nn.ReLU()).eval()
    snn = SpikingNet(make_if_snn(relu, CQ_NEURON, T, (6,)), _cq_spec(T)).eval()
    xs = [torch.randn(64, 6) for _ in range(2)]
    with torch.no_grad():
        a = relu(torch.cat(xs))
    th = normalize_thresholds(snn, relu, xs, percentile=100)
    assert th == {"act": pytest.approx(a.max().item())}
    assert float(snn.body.act.v_th) == pytest.approx(a.max().item())
    with torch.no_grad():  # constant input in range: the IF output is the activation rounded to v_th / T
        assert (snn(torch.cat(xs)) - a).abs().max().item() <= th["act"] / (2 * T) + 1e-5
    lower = normalize_thresholds(snn, relu, xs, percentile=50)["act"]
    assert 0 < lower < th["act"]
    # bounded activations keep their clip: for a CQ network normalization changes nothing
    cq = _OneLayer(ClampQuant(8)).eval()
    snn_cq = SpikingNet(make_if_snn(cq, CQ_NEURON, 8, (6,)), _cq_spec(8)).eval()
    assert normalize_thresholds(snn_cq, cq, xs, percentile=99.9) == {}
    assert float(snn_cq.body.act.v_th) == 1.0


# ----------------------------------------------------------------------------------------------------------
# the command line


@pytest.fixture(scope="module")
def cq_teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("cq")
    t = d / "t_cq.safetensors"
    # --bn-recompute 0: this 2-epoch teacher keeps BatchNorm's moving averages, as when the bias-calibration
    # test below was written (with recomputed statistics its logit gap starts 0.034 and ends 0.036 after the
    # calibration: on a teacher this small the test's premise, a gap to close, is not there)
    ok("teacher", "train", "--dataset", "synthetic", "--model", "vgg7", "--width", "0.0625", "--act", "cq",
       "--levels", "4", "--epochs", "2", "--bn-recompute", "0", "--quiet", "--out", t)
    return d, t


def test_cli_cq_pipeline(cq_teacher) -> None:
    d, t = cq_teacher
    manifest = json.loads(ok("inspect", t, "--json"))["manifest"]
    assert manifest["model"]["act"] == {"kind": "cq", "levels": 4}
    snn = d / "snn.safetensors"
    ok("convert", t, "--method", "cq", "--T", "4", "--out", snn)
    spiking = json.loads(ok("inspect", snn, "--json"))["manifest"]["spiking"]
    assert spiking["method"] == "cq" and spiking["neuron"]["kind"] == "if" and spiking["neuron"]["v_init"] == 0.5
    ann = json.loads(ok("eval", t, "--json", "--speed-batches", "0"))
    res = json.loads(ok("eval", snn, "--T", "4,16", "--json", "--speed-batches", "0"))
    assert [r["T"] for r in res["runs"]] == [4, 16]
    assert all(0 <= rate <= 1 for rate in res["firing_rates"].values())
    assert res["sops"] > 0  # binary spikes feed every conv after the first
    assert abs(res["runs"][1]["top1"] - ann["top1"]) <= 0.2
    # 8-bit weights, and the converted network as a distill student
    ok("convert", t, "--method", "cq", "--T", "4", "--weight-bits", "8", "--out", d / "snn8.safetensors")
    ok("distill", "--teacher", t, "--student", snn, "--epochs", "1", "--limit-train", "64", "--quiet",
       "--out", d / "tuned.safetensors")


def test_cli_cq_refuses_a_relu_teacher(tmp_path) -> None:
    t = tmp_path / "t.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "1", "--quiet", "--out", t)
    out = tmp_path / "snn.safetensors"
    assert_one_error_line(*run("convert", t, "--method", "cq", "--out", out), 2, "--act cq")
    assert not out.exists()
    # ... unless its thresholds come from data (Rueckauer et al.'s normalization, as thresholds)
    ok("convert", t, "--method", "cq", "--T", "16", "--norm-percentile", "99.9", "--calibrate", "1",
       "--batch-size", "32", "--device", "cpu", "--out", out)
    cal = json.loads(ok("inspect", out, "--json"))["manifest"]["calibration"]
    assert cal["norm_percentile"] == 99.9
    assert {layer["threshold_from"] for layer in cal["layers"]} == {"percentile"}
    loaded = artifacts.load(out).build()  # the thresholds travel in the artifact
    assert [float(m.v_th) for m in loaded.neurons().values()] == pytest.approx([la["v_th"] for la in cal["layers"]])
    assert any(la["v_th"] != 1.0 for la in cal["layers"])
    ok("eval", out, "--T", "16", "--json", "--speed-batches", "0")
    assert_one_error_line(*run("teacher", "train", "--dataset", "synthetic", "--act", "cq", "--out", out), 2,
                          "--levels")


def test_cli_cq_calibration(cq_teacher) -> None:
    """--calibrate: recorded in the manifest (config and what it did), the network no worse for it; an
    uncalibrated artifact has no record, and a manifest written before the field existed still loads."""
    d, t = cq_teacher
    plain, cal = d / "plain.safetensors", d / "cal.safetensors"
    ok("convert", t, "--method", "cq", "--T", "4", "--out", plain)
    res = json.loads(ok("convert", t, "--method", "cq", "--T", "4", "--calibrate", "2", "--batch-size", "32",
                        "--device", "cpu", "--json", "--out", cal))
    assert res["calibration"]["samples"] == 64
    m = json.loads(ok("inspect", cal, "--json"))["manifest"]
    assert (m["config"]["calibrate"], m["config"]["batch_size"], m["config"]["norm_percentile"]) == (2, 32, None)
    rec = m["calibration"]
    assert (rec["T"], rec["samples"], rec["bias_iterations"], rec["classifier"]) == (4, 64, 1, None)
    assert all(layer["bias_of"] and layer["threshold_from"] == "clip" for layer in rec["layers"])
    assert rec["logit_gap_after"] < rec["logit_gap_before"]
    old = json.loads(ok("inspect", plain, "--json"))["manifest"]
    assert old["calibration"] is None
    del old["calibration"]
    assert Manifest.model_validate(old).calibration is None
    a = json.loads(ok("eval", plain, "--T", "4", "--json", "--speed-batches", "0"))
    b = json.loads(ok("eval", cal, "--T", "4", "--json", "--speed-batches", "0"))
    assert b["top1"] >= a["top1"] - 0.01


@pytest.mark.parametrize("args,needle", [
    (["--calibrate", "-1"], "--calibrate"),
    (["--calibrate", "many"], "--calibrate"),
    (["--calibrate", "1", "--norm-percentile", "0"], "--norm-percentile"),
    (["--calibrate", "1", "--norm-percentile", "100.5"], "--norm-percentile"),
    (["--norm-percentile", "99.9"], "--calibrate"),
    (["--calibrate", "1", "--batch-size", "0"], "--batch-size"),
    (["--calibrate", "1", "--device", "tpu"], "--device"),
])
def test_cli_cq_calibration_bad_options(cq_teacher, tmp_path, args: list[str], needle: str) -> None:
    _, t = cq_teacher
    out = tmp_path / "snn.safetensors"
    assert_one_error_line(*run("convert", t, "--method", "cq", *args, "--out", out), 2, needle)
    assert not out.exists()
    assert_one_error_line(*run("convert", t, "--norm-percentile", "99", "--out", out), 2, "--method cq")
    assert not out.exists()


def test_apply_act_round_trip() -> None:
    model = build_model("vgg7", 4, 3, {"width": 0.0625})
    n_relu = sum(isinstance(m, nn.ReLU) for m in model.modules())
    apply_act(model, ActSpec(kind="qcfs", levels=4))
    assert sum(isinstance(m, QCFS) for m in model.modules()) == n_relu
    apply_act(model, ActSpec(kind="cq", levels=8))
    assert all(m.levels == 8 for m in model.modules() if isinstance(m, ClampQuant))
    apply_act(model, ActSpec(kind="relu"))  # a ReLU stage after a bounded one really is ReLU again
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == n_relu
