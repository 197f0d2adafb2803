"""OpsMeter: exact SOPs against a brute-force fan-out count, dense MACs against the formula, energy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from enofctl.ops import E_AC_PJ, E_MAC_PJ, LayerOps, OpsMeter, dense_macs, totals
from enofctl.schema import NeuronSpec
from enofctl.spiking import SpikingNeuron


def _out_len(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def brute_conv2d_sops(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """Loop over every input spike and count the (output position, output channel) pairs it reaches."""
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    ph, pw = conv.padding if conv.padding != "same" else (dh * (kh - 1) // 2, dw * (kw - 1) // 2)  # odd k
    n, c, h, w = x.shape
    ho, wo = _out_len(h, kh, sh, ph, dh), _out_len(w, kw, sw, pw, dw)
    per_group_out = conv.out_channels // conv.groups  # a spike in channel c feeds its group's outputs
    total = 0
    for _b, _ch, i, j in (x == 1).nonzero().tolist():
        fan = 0
        for oi in range(ho):
            for oj in range(wo):
                for ki in range(kh):
                    for kj in range(kw):
                        if oi * sh - ph + ki * dh == i and oj * sw - pw + kj * dw == j:
                            fan += 1
        total += fan * per_group_out
    return total


def brute_linear_sops(linear: nn.Linear, x: torch.Tensor) -> int:
    total = 0
    for _ in (x == 1).nonzero().tolist():
        total += linear.out_features  # one accumulate into every output
    return total


def spikes(*shape: int, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(*shape) < p).float()


def run(model: nn.Module, x: torch.Tensor, **kw) -> OpsMeter:
    meter = OpsMeter(model, **kw)
    with torch.no_grad():
        model(x)
    meter.close()
    return meter


# ---------------------------------------------------------------------------------------------------------
# exact SOPs


@settings(max_examples=30, deadline=None)
@given(
    groups=st.sampled_from([1, 2, "depthwise"]),
    cin_per_group=st.integers(1, 2),
    cout_per_group=st.integers(1, 3),
    kh=st.integers(1, 3), kw=st.integers(1, 3),
    stride=st.sampled_from([1, 2, (1, 2)]),
    padding=st.sampled_from([0, 1, 2, (2, 1)]),
    dilation=st.sampled_from([1, 2, (2, 1)]),
    h=st.integers(5, 7), w=st.integers(5, 7),
    p=st.sampled_from([0.1, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_conv_sops_match_brute_force(groups, cin_per_group, cout_per_group, kh, kw, stride, padding, dilation,
                                     h, w, p, seed):
    torch.manual_seed(seed)
    g = 3 if groups == "depthwise" else groups
    cin_per_group = 1 if groups == "depthwise" else cin_per_group
    conv = nn.Conv2d(g * cin_per_group, g * cout_per_group, (kh, kw), stride, padding, dilation, groups=g)
    x = spikes(2, g * cin_per_group, h, w, p=p)
    meter = run(conv, x)
    assert meter.input_kind("") == "spikes"
    assert meter.sops[""] == brute_conv2d_sops(conv, x)
    assert meter.macs[""] == 0


def test_conv_sops_fixed_cases():
    """Named cases the property test might not hit on a given run: depthwise stride 2 dilation 2 pad 2."""
    cases = [
        nn.Conv2d(4, 4, (3, 2), stride=2, padding=2, dilation=2, groups=4),
        nn.Conv2d(4, 6, (1, 3), stride=(2, 1), padding=(0, 1), groups=2),
        nn.Conv2d(3, 5, 3, stride=1, padding=1),
        nn.Conv2d(2, 2, 3, padding="same", dilation=2),
    ]
    for conv in cases:
        x = spikes(2, conv.in_channels, 7, 6)
        assert run(conv, x).sops[""] == brute_conv2d_sops(conv, x), conv


def test_full_spike_input_without_padding_is_dense():
    """With every input a spike and no padding, SOPs equal the dense MAC count."""
    conv = nn.Conv2d(4, 6, 3, stride=1, groups=2)
    x = torch.ones(2, 4, 6, 6)
    meter = run(conv, x)
    assert meter.sops[""] == 2 * 4 * 4 * 6 * (2 * 3 * 3)


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
def test_linear_sops_any_leading_shape(shape):
    linear = nn.Linear(shape[-1], 7)
    x = spikes(*shape, p=0.5)
    meter = run(linear, x)
    assert meter.input_kind("") == "spikes"
    assert meter.sops[""] == brute_linear_sops(linear, x) == int(x.sum()) * 7


def test_zero_spikes_give_zero_sops():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 2))
    meter = OpsMeter(net)
    with torch.no_grad():
        net[0](torch.zeros(2, 3, 5, 5))
        net[2](torch.zeros(2, 100))
    meter.close()
    rows = meter.rows(samples=2)
    assert [(r.input_kind, r.sops_per_sample, r.macs_per_sample) for r in rows] == [("spikes", 0, 0)] * 2
    tot = totals(rows)
    assert tot == {"sops": 0, "macs": 0, "energy_pj": 0, "macs_effective": 0, "energy_effective_pj": 0,
                   "synapses": tot["synapses"]}
    # the dense count is every synapse, padding taps excluded: 5x5 output, pad 1, 3x3: 13 taps per axis
    assert tot["synapses"] == 13 * 13 * 3 * 4 + 100 * 2


# ---------------------------------------------------------------------------------------------------------
# dense MACs


@settings(max_examples=30, deadline=None)
@given(
    groups=st.sampled_from([1, 2]), k=st.sampled_from([1, 3, (3, 1)]), stride=st.sampled_from([1, 2]),
    padding=st.sampled_from([0, 1, 2]), dilation=st.sampled_from([1, 2]), n=st.integers(1, 3),
)
def test_conv_macs_analog_formula(groups, k, stride, padding, dilation, n):
    conv = nn.Conv2d(4, 6, k, stride, padding, dilation, groups=groups)
    x = torch.randn(n, 4, 7, 8)
    meter = run(conv, x)
    kh, kw = conv.kernel_size
    ho = _out_len(7, kh, stride, padding, dilation)
    wo = _out_len(8, kw, stride, padding, dilation)
    assert meter.input_kind("") == "analog"
    assert meter.sops[""] == 0
    assert meter.macs[""] == n * 6 * ho * wo * (4 // groups) * kh * kw


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4)])
def test_linear_macs_analog_formula(shape):
    linear = nn.Linear(4, 7)
    meter = run(linear, torch.randn(*shape))
    assert meter.macs[""] == math.prod(shape[:-1]) * 4 * 7


def test_dense_macs_hand_formula():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),            # 8*8*8 outputs * 3*9
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),   # 8*4*4 outputs * 1*9
        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),   # 128*10
    ).train()
    rows = dense_macs(net, (3, 8, 8))
    assert net.training  # mode restored
    assert [r.name for r in rows] == ["0", "2", "5"]
    assert [r.macs_per_sample for r in rows] == [8 * 8 * 8 * 27, 8 * 4 * 4 * 9, 128 * 10]
    assert all(r.input_kind == "analog" and r.sops_per_sample == 0 for r in rows)
    assert totals(rows)["energy_pj"] == pytest.approx(totals(rows)["macs"] * E_MAC_PJ)


# ---------------------------------------------------------------------------------------------------------
# mixed networks, energy, bookkeeping


def _mixed_net(T: int) -> nn.Sequential:
    neuron = lambda: SpikingNeuron(NeuronSpec(kind="if", v_th=0.1), T)  # fires often: a mix of 0s and 1s
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),   # 0: image (analog)
        neuron(),
        nn.Conv2d(4, 4, 3, padding=1),   # 2: spikes
        neuron(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 1),              # 5: pooled spikes (analog)
        neuron(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),         # 8: spikes
    )


def test_mixed_network_input_kinds_and_energy():
    T, B = 2, 3
    net = _mixed_net(T)
    x = torch.rand(B, 2, 8, 8).repeat(T, 1, 1, 1)  # direct encoding, [T*B, C, H, W]
    meter = run(net, x)
    rows = {r.name: r for r in meter.rows(samples=B)}
    assert list(rows) == ["0", "2", "5", "8"]
    assert {n: r.input_kind for n, r in rows.items()} == {"0": "analog", "2": "spikes", "5": "analog",
                                                          "8": "spikes"}
    assert rows["0"].macs_per_sample == T * 4 * 8 * 8 * 2 * 9
    assert rows["5"].macs_per_sample == T * 4 * 4 * 4 * 4
    assert rows["2"].sops_per_sample > 0 and rows["8"].sops_per_sample > 0
    for r in rows.values():
        assert (r.sops_per_sample == 0) != (r.macs_per_sample == 0)
        assert r.energy_pj_per_sample == pytest.approx(r.macs_per_sample * 4.6 + r.sops_per_sample * 0.9)
    assert (E_MAC_PJ, E_AC_PJ) == (4.6, 0.9)
    tot = totals(rows.values())
    assert tot["energy_pj"] == pytest.approx(tot["macs"] * 4.6 + tot["sops"] * 0.9)
    custom = meter.rows(samples=B, e_mac=1.0, e_ac=2.0)
    assert totals(custom)["energy_pj"] == pytest.approx(tot["macs"] + 2 * tot["sops"])


def test_calls_accumulate_mixed_kind_and_reset():
    linear = nn.Linear(4, 5)
    meter = OpsMeter(linear)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    with torch.no_grad():
        linear(x)
        linear(x)
        linear(torch.randn(2, 4))
    assert meter.calls[""] == 3
    assert meter.input_kind("") == "mixed"
    (row,) = meter.rows(samples=1)
    assert row.input_kind == "mixed" and row.type == "linear"
    assert (row.sops_per_sample, row.macs_per_sample) == (2 * 3 * 5, 2 * 4 * 5)
    meter.reset()
    assert meter.rows(samples=1) == []
    meter.close()
    linear(x)  # hooks removed: nothing counted
    assert meter.calls == {}
    with pytest.raises(ValueError, match="samples"):
        meter.rows(samples=0)


def test_hooks_do_not_keep_graphs_or_change_outputs():
    net = _mixed_net(1)
    x = torch.rand(2, 2, 8, 8, requires_grad=True)
    ref = net(x)
    meter = OpsMeter(net)
    out = net(x)
    out.sum().backward()  # hooks run under no_grad and leave autograd alone
    meter.close()
    assert torch.equal(out, ref)


def test_root_names_and_padding_mode():
    inner = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    outer = nn.Sequential(inner)
    meter = run(outer, torch.rand(1, 1, 3, 3), root=inner)
    assert list(meter.calls) == ["0", "2"]
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        OpsMeter(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"))


def test_layer_ops_is_strict():
    with pytest.raises(ValueError):
        LayerOps(name="x", type="pool", input_kind="spikes", sops_per_sample=0, macs_per_sample=0,
                 energy_pj_per_sample=0)


def test_spiking_net_names_match_teacher(tiny_resnet20):
    from enofctl.schema import SpikingSpec
    from enofctl.spiking import make_spiking

    teacher, input_size = tiny_resnet20
    snn = make_spiking(teacher, SpikingSpec(T=2, repact=True), input_size).eval()
    meter = run(snn, torch.rand(2, *input_size))
    rows = {r.name: r for r in meter.rows(samples=2)}
    ann = dense_macs(teacher, input_size)
    assert set(rows) == {r.name for r in ann}
    assert rows["stem.0"].input_kind == "analog"          # direct encoding
    assert rows["stem.3"].input_kind == "spikes"
    assert rows["stages.0.0.conv1"].input_kind == "analog"  # after the stem's average pool
    assert rows["fc"].input_kind == "analog"               # RepAct: full-precision output feature
    # the SNN's body run as an ANN costs what the teacher costs
    assert [r.macs_per_sample for r in dense_macs(snn, input_size)] == [r.macs_per_sample for r in ann]


def test_sops_exact_under_bfloat16_autocast():
    """Receptive fields of 512*9 spikes are not exact in bfloat16: the count must run in float32."""
    conv = nn.Conv2d(512, 8, 3, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        meter = run(conv, torch.ones(1, 512, 6, 6))
    taps = 4 * 4 * 9 + 4 * 4 * 6 + 4 * 4  # 6x6 output, padding 1: 16 inner x9, 16 edge x6, 4 corners x4
    assert meter.sops[""] == taps * 512 * 8


def test_dense_macs_of_a_fresh_student_is_its_teachers(tiny_resnet20):
    """The build-time probe must not leave the first neuron repeating its input (T rows read as T images)."""
    from enofctl.schema import SpikingSpec
    from enofctl.spiking import make_spiking

    teacher, input_size = tiny_resnet20
    snn = make_spiking(teacher, SpikingSpec(T=4, repact=True), input_size).eval()
    assert snn.stem_once  # the probe ran and chose the shortcut
    ann = [r.macs_per_sample for r in dense_macs(teacher, input_size)]
    assert [r.macs_per_sample for r in dense_macs(snn, input_size)] == ann
    snn(torch.rand(2, *input_size))  # after a forward that set the flag, too
    assert [r.macs_per_sample for r in dense_macs(snn, input_size)] == ann


def test_classifier_without_repact_counts_what_runs(tiny_resnet20):
    """No RepAct: the classifier runs once per sample, on the pooled spikes averaged over T (analog: multiples
    of 1/T), so it is counted once as MACs: dense = in x out, effective = non-zero features x non-zero weights,
    counted here by hand from the classifier's input. (Until report schema 2 it was counted as the last
    neuron's spikes x out_features at every step, a computation the student does not do.)"""
    from enofctl.schema import SpikingSpec
    from enofctl.spiking import make_spiking

    teacher, input_size = tiny_resnet20
    snn = make_spiking(teacher, SpikingSpec(T=2, repact=False, neuron=NeuronSpec(v_th=0.05)), input_size).eval()
    seen = {}
    hook = snn.get_classifier().register_forward_hook(lambda mod, i, o: seen.__setitem__("x", i[0].detach().clone()))
    meter = run(snn, torch.rand(3, *input_size))
    hook.remove()
    rows = {r.name: r for r in meter.rows(samples=3)}
    feat = seen["x"]  # [3, 64]: the mean over T of the pooled last spikes
    assert feat.shape == (3, 64) and not torch.equal(feat, (feat != 0).float())  # analog
    w = snn.get_classifier().weight
    assert rows["fc"].input_kind == "analog" and rows["fc"].sops_per_sample == 0
    assert rows["fc"].macs_per_sample == 64 * 10
    effective = sum(int((w[:, feat[b] != 0] != 0).sum()) for b in range(3))
    assert 0 < effective < 3 * 64 * 10
    assert rows["fc"].macs_effective_per_sample == pytest.approx(effective / 3)
    with_repact = make_spiking(teacher, SpikingSpec(T=2, repact=True), input_size).eval()
    head = {r.name: r for r in run(with_repact, torch.rand(3, *input_size)).rows(samples=3)}["fc"]
    assert head.input_kind == "analog" and head.macs_per_sample == 64 * 10  # once, on the mean feature


def test_effective_macs_match_brute_force_pairs():
    """Effective MACs: the (non-zero input, non-zero weight) pairs of a conv, padding taps excluded, counted by
    a loop over output positions and taps; linear likewise."""
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight[0, 1] = 0  # a few exact zero weights
        conv.weight[2, 0, 1, 1] = 0
    x = torch.randn(2, 2, 5, 6)
    x[x.abs() < 0.5] = 0  # zero inputs
    meter = run(conv, x)
    pad = F.pad(x, (1, 1, 1, 1))
    inside = F.pad(torch.ones_like(x), (1, 1, 1, 1))
    want = 0
    ho, wo = _out_len(5, 3, 2, 1, 1), _out_len(6, 3, 2, 1, 1)
    for n in range(2):
        for o in range(3):
            for i in range(ho):
                for j in range(wo):
                    for c in range(2):
                        for ki in range(3):
                            for kj in range(3):
                                xi, xj = 2 * i + ki, 2 * j + kj
                                if inside[n, c, xi, xj] and pad[n, c, xi, xj] != 0 and conv.weight[o, c, ki, kj] != 0:
                                    want += 1
    assert meter.input_kind("") == "analog"
    assert meter.macs_effective[""] == want
    assert meter.macs[""] == 2 * 3 * ho * wo * 2 * 9 > want
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight[1, 2] = 0
    xl = torch.tensor([[0.5, 0.0, -1.0, 2.0]])
    assert run(linear, xl).macs_effective[""] == 3 * 3 - 1  # 3 non-zero inputs x 3 outputs, one zero weight
