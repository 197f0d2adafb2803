"""The optimized training paths against the plain ones they replace: the one-node neuron sequence against
the per-step loop, spikes saved as bits against spikes saved as floats, the first layer run once against
running it at every step. Outputs must be identical; gradients equal up to summation order."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from enofctl.models import build_model
from enofctl.models.base import TimmHead
from enofctl.ops import OpsMeter
from enofctl.schema import NeuronSpec, SpikingSpec
from enofctl.spiking import make_spiking, neuron_multistep
from enofctl.spiking.neuron import neuron_sequence
from enofctl.spiking.packing import SpikePacker, pack_bits, unpack_bits

specs = st.builds(
    NeuronSpec,
    kind=st.sampled_from(["lif", "if"]),
    decay=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    v_th=st.sampled_from([0.3, 0.5, 1.0]),
    reset=st.sampled_from(["hard", "soft"]),
    surrogate=st.sampled_from(["rect", "triangle", "sigmoid", "atan", "tanh", "dspike"]),
    v_init=st.sampled_from([0.0, 0.5]),
)


def _grads(fn, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    out = fn(x)
    (out * w).sum().backward()
    return out.detach(), x.grad


@settings(max_examples=80, deadline=None)
@given(spec=specs, T=st.integers(1, 5), B=st.integers(1, 3), dtype=st.sampled_from([torch.float32, torch.float64]),
       seed=st.integers(0, 2**16))
def test_sequence_equals_the_per_step_loop(spec: NeuronSpec, T: int, B: int, dtype, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T * B, 3, 4, generator=g) * 0.8 + 0.4).to(dtype)
    w = torch.randn(T * B, 3, 4, generator=g).to(dtype)
    s_ref, g_ref = _grads(lambda z: neuron_multistep(z.unflatten(0, (T, -1)), spec).flatten(0, 1), x, w)
    s_new, g_new = _grads(lambda z: neuron_sequence(z, spec, T), x, w)
    torch.testing.assert_close(s_new, s_ref, rtol=0, atol=0)
    with torch.no_grad():  # the inference path keeps nothing and reads its input in place
        torch.testing.assert_close(neuron_sequence(x, spec, T), s_ref, rtol=0, atol=0)
        torch.testing.assert_close(neuron_sequence(x[:B], spec, T, repeat=True),
                                   neuron_multistep(x[:B].expand(T, *x[:B].shape), spec).flatten(0, 1),
                                   rtol=0, atol=0)
    tol = 1e-12 if dtype == torch.float64 else 2e-6  # fused multiply-adds round once, the loop twice
    torch.testing.assert_close(g_new, g_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_repeated_input_equals_the_expanded_one(reset: str) -> None:
    spec, T, B = NeuronSpec(reset=reset, v_init=0.5), 4, 3
    x = torch.randn(B, 2, 5, 5, dtype=torch.float64) + 0.3
    w = torch.randn(T * B, 2, 5, 5, dtype=torch.float64)
    s_ref, g_ref = _grads(lambda z: neuron_sequence(z.repeat(T, 1, 1, 1), spec, T), x, w)
    s_new, g_new = _grads(lambda z: neuron_sequence(z, spec, T, repeat=True), x, w)
    torch.testing.assert_close(s_new, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(g_new, g_ref, rtol=1e-12, atol=1e-12)


def test_channels_last_is_kept_and_changes_nothing() -> None:
    spec, T = NeuronSpec(), 2
    x = torch.randn(T * 3, 4, 5, 5) + 0.3
    w = torch.randn_like(x)
    s_ref, g_ref = _grads(lambda z: neuron_sequence(z, spec, T), x, w)
    out = neuron_sequence(x.to(memory_format=torch.channels_last), spec, T)
    assert out.is_contiguous(memory_format=torch.channels_last)
    s_cl, g_cl = _grads(lambda z: neuron_sequence(z, spec, T), x.to(memory_format=torch.channels_last), w)
    torch.testing.assert_close(s_cl, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(g_cl, g_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_inplace_membrane_over_the_input_changes_nothing_but_the_input(reset: str) -> None:
    spec, T = NeuronSpec(reset=reset, v_init=0.5, decay=0.3), 3
    x = torch.randn(T * 2, 3, 4, 4) + 0.3
    w = torch.randn_like(x)
    s_ref, g_ref = _grads(lambda z: neuron_sequence(z, spec, T), x, w)
    leaf = x.clone().requires_grad_()
    pre = leaf * 1.0  # a non-leaf, like a BatchNorm output
    spk = neuron_sequence(pre, spec, T, inplace=True)
    assert not torch.equal(pre, x)  # the membrane was written over it
    (spk * w).sum().backward()
    torch.testing.assert_close(spk.detach(), s_ref, rtol=0, atol=0)
    torch.testing.assert_close(leaf.grad, g_ref, rtol=0, atol=0)
    # a leaf is never overwritten
    x_leaf = x.clone().requires_grad_()
    neuron_sequence(x_leaf, spec, T, inplace=True)
    torch.testing.assert_close(x_leaf.detach(), x, rtol=0, atol=0)


def test_rows_must_be_whole_steps() -> None:
    with pytest.raises(ValueError, match="not T=4 steps"):
        neuron_sequence(torch.zeros(6, 2), NeuronSpec(), 4)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_bits_round_trip(n: int, seed: int) -> None:
    x = (torch.rand(n, generator=torch.Generator().manual_seed(seed)) > 0.5).float()
    packed = pack_bits(x)
    assert packed.dtype == torch.uint8 and packed.numel() == (n + 7) // 8
    torch.testing.assert_close(unpack_bits(packed, n, torch.float32), x, rtol=0, atol=0)


def test_packer_keeps_saved_spikes_as_bits_and_nothing_else() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1)
    spk = (torch.rand(2, 3, 6, 6) > 0.5).float()
    analog = torch.randn(2, 3, 6, 6)
    saved = []
    with SpikePacker() as packer:
        packer.mark(spk)
        # what the packer hands autograd for each saved tensor
        saved.append(packer._pack(spk))
        saved.append(packer._pack(spk[:, 1:]))  # a view of the spikes: packed, viewed back
        saved.append(packer._pack(analog))
        out = conv(spk).sum() + conv(analog).sum()
    assert type(saved[0]).__name__ == "_Packed" and saved[0].bits.numel() == spk.numel() // 8
    assert saved[1].bits is saved[0].bits  # one packed copy per storage
    assert saved[2] is analog
    torch.testing.assert_close(SpikePacker._unpack(saved[1]), spk[:, 1:], rtol=0, atol=0)
    out.backward()
    ref = copy.deepcopy(conv)
    ref.zero_grad()
    (ref(spk).sum() + ref(analog).sum()).backward()
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-6, atol=1e-6)


def _plain(net):
    """The student before optimization: per-step loop, float spikes, first layer at every step."""
    net = copy.deepcopy(net)
    net.stem_once = net.pack_spikes = False
    for m in net.neurons().values():
        m.forward = lambda x, m=m: neuron_multistep(x.unflatten(0, (m.T, -1)), m.spec).flatten(0, 1)
    return net


def _train_step(net, x):
    net.train()
    net.zero_grad()
    out = net(x)
    (out * torch.arange(1.0, out.shape[1] + 1)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}


def test_student_training_step_equals_the_plain_one() -> None:
    # a whole ResNet: spike tensors are freed and their memory reused by new ones while packing, and the
    # stem is shared by the first neuron; this configuration once caught a stale packed copy
    torch.manual_seed(0)
    ann = build_model("resnet20", 10, 3, {"width": 0.25})
    net = make_spiking(ann, SpikingSpec(T=4), (3, 32, 32))
    assert net.stem_once and net.pack_spikes
    x = torch.randn(8, 3, 32, 32)
    out, grads = _train_step(net, x)
    out_ref, grads_ref = _train_step(_plain(net), x)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    for name, g in grads.items():
        torch.testing.assert_close(g, grads_ref[name], rtol=1e-4, atol=1e-4, msg=name)
    for (name, b), (_, b_ref) in zip(net.named_buffers(), _plain(net).named_buffers(), strict=True):
        torch.testing.assert_close(b, b_ref, rtol=1e-4, atol=1e-6, msg=name)  # BN running statistics


class _InputSkip(TimmHead):
    """The image also reaches a layer after the first activation: the stem cannot run once per image."""

    def __init__(self):
        super().__init__()
        self.conv, self.act, self.skip = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(1, 4, 1)
        self.act2, self.num_features = nn.ReLU(), 4
        self.head = nn.Linear(4, 3)

    def forward_features(self, x):
        return self.act2(self.act(self.conv(x)) + self.skip(x))

    def forward_head(self, x, pre_logits=False):
        x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def get_classifier(self):
        return self.head


def test_stem_runs_every_step_when_the_image_is_used_elsewhere() -> None:
    net = make_spiking(_InputSkip(), SpikingSpec(T=3, repact=False), (1, 6, 6))
    assert not net.stem_once
    x = torch.rand(2, 1, 6, 6)
    assert net(x).shape == (2, 3)


def test_ops_meter_counts_the_first_layer_at_every_step() -> None:
    torch.manual_seed(0)
    T = 3
    net = make_spiking(build_model("resnet20", 10, 3, {"width": 0.25}), SpikingSpec(T=T), (3, 32, 32)).eval()
    assert net.stem_once
    x = torch.randn(2, 3, 32, 32)
    with OpsMeter(net) as meter, torch.no_grad():
        net(x)
        assert not net.stem_once
    assert net.stem_once  # restored
    stem = net.body.stem[0]
    assert meter.macs["stem.0"] == T * 2 * stem.out_channels * 32 * 32 * stem.in_channels * 9


def test_dspike_falls_back_from_the_triton_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel implements every surrogate but dspike; asked for dspike, it declines and the PyTorch path runs."""
    from enofctl.spiking import triton_neuron
    from enofctl.surrogates import SURROGATES

    assert set(SURROGATES) - set(triton_neuron._SURROGATE_IDS) == {"dspike"}
    monkeypatch.setenv("ENOFCTL_TRITON_NEURON", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.ones(4, 3)
    assert not triton_neuron.supports(x, 0.5, "dspike")
