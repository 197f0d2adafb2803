"""enofctl.spiking.neuron against a plain per-step loop written here, plus the laws a spiking neuron obeys."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from enofctl.schema import NeuronSpec
from enofctl.spiking.neuron import SpikeFn, SpikingNeuron, neuron_multistep, neuron_step
from enofctl.surrogates import SURROGATES

# ----------------------------------------------------------------------------------------------------------
# the reference, written independently of the package
#
# Each surrogate is the derivative of a smooth step ("primitive") that rises from 0 to 1. The reference spike
# is Heaviside in the forward pass and differentiates the primitive in the backward pass (straight-through):
#     s = H(x) + g(x) - g(x).detach()
# so its gradient is computed by torch.autograd from g, not from the package's closed-form derivatives.


def _triangle_primitive(x: torch.Tensor, a: float) -> torch.Tensor:
    xc = x.clamp(-a, a)
    return torch.where(xc < 0, (a + xc) ** 2 / (2 * a * a), 1 - (a - xc) ** 2 / (2 * a * a))


PRIMITIVES = {
    "rect": lambda x, a: (x / a + 0.5).clamp(0, 1),
    "triangle": _triangle_primitive,
    "sigmoid": lambda x, a: torch.sigmoid(a * x),
    "atan": lambda x, a: torch.atan(math.pi / 2 * a * x) / math.pi + 0.5,
    "tanh": lambda x, a: (1 + torch.tanh(a * x)) / 2,
    "dspike": lambda x, a: torch.tanh(a * x.clamp(-0.5, 0.5)) / (2 * math.tanh(a / 2)) + 0.5,
}

# The documented closed forms (module comments / docstrings), on plain Python floats.
FORMULAS = {
    "rect": lambda x, a: (1.0 / a) if abs(x) < a / 2 else 0.0,
    "triangle": lambda x, a: max(0.0, a - abs(x)) / (a * a),
    "sigmoid": lambda x, a: a * (1 / (1 + math.exp(-a * x))) * (1 - 1 / (1 + math.exp(-a * x))),
    "atan": lambda x, a: (a / 2) / (1 + (math.pi / 2 * a * x) ** 2),
    "tanh": lambda x, a: (a / 2) * (1 - math.tanh(a * x) ** 2),
    "dspike": lambda x, a: a * (1 - math.tanh(a * x) ** 2) / (2 * math.tanh(a / 2)) if abs(x) < 0.5 else 0.0,
}
DEFAULT_ALPHA = {"rect": 1.0, "triangle": 1.0, "sigmoid": 4.0, "atan": 2.0, "tanh": 3.0, "dspike": 3.0}


def ref_spike(x: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
    g = PRIMITIVES[surrogate](x, alpha)
    return (x > 0).to(x.dtype) + (g - g.detach())


def ref_loop(x_seq: torch.Tensor, kind: str, decay: float, v_th: float, reset: str, surrogate: str,
             alpha: float) -> torch.Tensor:
    """Plain LIF/IF loop: ``x_seq`` [T, B, ...] -> spikes [T, B, ...]."""
    d = 1.0 if kind == "if" else decay
    v = torch.zeros_like(x_seq[0])
    out = []
    for t in range(x_seq.shape[0]):
        u = d * v + x_seq[t]
        s = ref_spike(u - v_th, surrogate, alpha)
        v = u * (1 - s) if reset == "hard" else u - s * v_th
        out.append(s)
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------------------
# surrogates


def test_surrogate_table_is_the_documented_one() -> None:
    assert set(SURROGATES) == set(FORMULAS)
    assert {k: a for k, (_, a) in SURROGATES.items()} == DEFAULT_ALPHA


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("alpha", [None, 0.7])
def test_surrogate_backward_matches_formula(name: str, alpha: float | None) -> None:
    a = DEFAULT_ALPHA[name] if alpha is None else alpha
    # points away from the kinks of rect (|x| = a/2) and triangle (|x| = a)
    points = [-2.3, -0.6 * a, -0.3 * a, -0.1, 0.0, 0.05, 0.2 * a, 0.45 * a, 0.8 * a, 1.7]
    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    spk = SpikeFn.apply(x, name, a)
    assert spk.tolist() == [1.0 if p > 0 else 0.0 for p in points]  # Heaviside, H(0) = 0
    spk.backward(torch.ones_like(spk))
    expected = torch.tensor([FORMULAS[name](p, a) for p in points], dtype=torch.float64)
    torch.testing.assert_close(x.grad, expected, rtol=1e-6, atol=1e-9)
    # ...and the same through the spec (the alpha override or the default)
    spec = NeuronSpec(surrogate=name, alpha=alpha, v_th=0.5)
    assert spec.surrogate_alpha() == a
    u = (torch.tensor(points, dtype=torch.float64) + 0.5).requires_grad_()
    spk2, _ = neuron_step(u, torch.zeros_like(u), spec)
    spk2.sum().backward()
    torch.testing.assert_close(u.grad, expected, rtol=1e-6, atol=1e-9)


def test_dspike_is_the_authors_formula_in_u() -> None:
    """With v_th = 0.5, Dspike's value and gradient are those of the authors' code, written in the membrane u:
    d/du [tanh(3 (clamp(u, 0, 1) - 0.5)) / (2 tanh(1.5)) + 0.5], by autograd, on a grid with the window's edges."""
    # steps of 1/64 (exact in binary, so u - 0.5 rounds nowhere; within an ulp of an edge the rounding of
    # u - v_th decides), and points just inside and outside the edges
    u_grid = torch.cat([torch.arange(-32, 97, dtype=torch.float64) / 64,
                        torch.tensor([-1e-9, 1e-9, 1 - 1e-9, 1 + 1e-9], dtype=torch.float64)])
    u_ref = u_grid.clone().requires_grad_()
    (torch.tanh(3 * (u_ref.clamp(0, 1) - 0.5)) / (2 * math.tanh(1.5)) + 0.5).sum().backward()
    u = u_grid.clone().requires_grad_()
    spk, _ = neuron_step(u, torch.zeros_like(u), NeuronSpec(surrogate="dspike", v_th=0.5))
    spk.sum().backward()
    assert spk.detach().tolist() == [1.0 if p > 0.5 else 0.0 for p in u_grid.tolist()]  # spike forward as usual
    torch.testing.assert_close(u.grad, u_ref.grad, rtol=1e-12, atol=1e-12)
    fn, a = SURROGATES["dspike"]
    torch.testing.assert_close(fn(u_grid - 0.5, a), u_ref.grad, rtol=1e-12, atol=1e-12)  # the registered value
    assert fn(torch.tensor([0.0], dtype=torch.float64), a).item() == pytest.approx(3 / (2 * math.tanh(1.5)))
    assert 3 / (2 * math.tanh(1.5)) == pytest.approx(1.66, abs=5e-3)
    assert u.grad[(u_grid < 0) | (u_grid > 1)].abs().max() == 0  # zero outside the window
    # the edges u = 0 and u = 1 are outside the window (torch.clamp's gradient, the authors' code, is 0 there)
    assert u.grad[u_grid == 0.0].max() == 0 and u.grad[u_grid == 1.0].max() == 0 and u.grad[u_grid == 0.5].min() > 1.6
    # another v_th moves the window with it: u - v_th in [-0.5, 0.5]
    u2 = torch.tensor([0.45, 0.55, 1.0, 1.55], dtype=torch.float64, requires_grad=True)
    spk2, _ = neuron_step(u2, torch.zeros_like(u2), NeuronSpec(surrogate="dspike", v_th=1.0))
    spk2.sum().backward()
    assert u2.grad[0] == 0 and u2.grad[3] == 0 and u2.grad[1] > 0
    assert u2.grad[2].item() == pytest.approx(3 / (2 * math.tanh(1.5)))


def test_tanh_is_not_dspike() -> None:
    x = torch.tensor([0.0, 0.7], dtype=torch.float64)
    tanh, dspike = SURROGATES["tanh"][0](x, 3.0), SURROGATES["dspike"][0](x, 3.0)
    assert tanh[0] == 1.5 and dspike[0] > 1.65 and tanh[1] > 0 and dspike[1] == 0


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_surrogate_integrates_to_one(name: str) -> None:
    """Every surrogate is the derivative of a 0 -> 1 step: its integral over the line is 1."""
    fn, a = SURROGATES[name]
    x = torch.linspace(-200, 200, 2_000_001, dtype=torch.float64)
    area = torch.trapezoid(fn(x, a), x).item()
    assert area == pytest.approx(1.0, abs=5e-3)


# ----------------------------------------------------------------------------------------------------------
# the package neuron against the reference loop


@pytest.mark.parametrize("surrogate", sorted(FORMULAS))
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("kind", ["lif", "if"])
def test_spiking_neuron_matches_reference_loop(kind: str, reset: str, surrogate: str) -> None:
    T, B = 4, 3
    spec = NeuronSpec(kind=kind, decay=0.6, v_th=0.8, reset=reset, surrogate=surrogate)
    a = DEFAULT_ALPHA[surrogate]
    x_seq = (torch.randn(T, B, 2, 5, dtype=torch.float64) * 0.8 + 0.3)
    w = torch.randn(T, B, 2, 5, dtype=torch.float64)

    x_ref = x_seq.clone().requires_grad_()
    s_ref = ref_loop(x_ref, kind, 0.6, 0.8, reset, surrogate, a)
    (s_ref * w).sum().backward()
    assert 0 < s_ref.detach().mean() < 1  # the input is neither silent nor saturating
    assert x_ref.grad.abs().sum() > 0

    # the module sees time folded into the batch, [T*B, ...]
    neuron = SpikingNeuron(spec, T=T)
    x_fold = x_seq.flatten(0, 1).clone().requires_grad_()
    s_fold = neuron(x_fold)
    assert s_fold.shape == x_fold.shape
    (s_fold * w.flatten(0, 1)).sum().backward()
    torch.testing.assert_close(s_fold.detach().unflatten(0, (T, B)), s_ref.detach(), rtol=0, atol=0)
    torch.testing.assert_close(x_fold.grad.unflatten(0, (T, B)), x_ref.grad, rtol=1e-9, atol=1e-12)

    # the functional loop, [T, B, ...]
    x_ms = x_seq.clone().requires_grad_()
    s_ms = neuron_multistep(x_ms, spec)
    (s_ms * w).sum().backward()
    torch.testing.assert_close(s_ms.detach(), s_ref.detach(), rtol=0, atol=0)
    torch.testing.assert_close(x_ms.grad, x_ref.grad, rtol=1e-9, atol=1e-12)


def test_hard_and_soft_reset_differ_and_lif_leaks() -> None:
    """Guards the reference test against options that are silently ignored."""
    x = torch.full((4, 1), 0.7)
    hard = neuron_multistep(x, NeuronSpec(kind="if", v_th=1.0, reset="hard"))[:, 0].tolist()
    soft = neuron_multistep(x, NeuronSpec(kind="if", v_th=1.0, reset="soft"))[:, 0].tolist()
    # u: 0.7, 1.4 (spike) -> hard: 0, 0.7, 1.4 (spike) | soft: 0.4, 1.1 (spike), 0.8
    assert hard == [0.0, 1.0, 0.0, 1.0]
    assert soft == [0.0, 1.0, 1.0, 0.0]
    # LIF with decay 0.25: u = 0.7, 0.875, 0.91875, ... never above 1
    assert neuron_multistep(x, NeuronSpec(kind="lif", decay=0.25, v_th=1.0)).sum() == 0
    # IF ignores the decay
    if_leaky = NeuronSpec(kind="if", decay=0.25, v_th=1.0, reset="hard")
    assert neuron_multistep(x, if_leaky)[:, 0].tolist() == hard


def test_neuron_multistep_initial_membrane() -> None:
    spec = NeuronSpec(kind="lif", decay=0.5, v_th=1.0)
    x = torch.full((1, 2), 0.6)
    assert neuron_multistep(x, spec).sum() == 0
    assert neuron_multistep(x, spec, v0=torch.tensor([1.0, 0.0])).tolist() == [[1.0, 0.0]]  # 0.5 + 0.6 > 1


def test_spiking_neuron_keeps_no_state_between_calls() -> None:
    neuron = SpikingNeuron(NeuronSpec(), T=2)
    x = torch.rand(2 * 3, 4) * 2
    torch.testing.assert_close(neuron(x), neuron(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------
# properties

specs = st.builds(
    NeuronSpec,
    kind=st.sampled_from(["lif", "if"]),
    decay=st.floats(0.0, 1.0),
    v_th=st.floats(0.05, 3.0),
    reset=st.sampled_from(["hard", "soft"]),
    surrogate=st.sampled_from(sorted(FORMULAS)),
)


@settings(max_examples=60, deadline=None)
@given(spec=specs, T=st.integers(1, 4), B=st.integers(1, 3), n=st.integers(1, 5), data=st.data())
def test_spikes_are_binary_and_rates_in_unit_interval(spec: NeuronSpec, T: int, B: int, n: int, data) -> None:
    values = data.draw(st.lists(st.floats(-10.0, 10.0), min_size=T * B * n, max_size=T * B * n))
    x = torch.tensor(values, dtype=torch.float32).view(T * B, n)
    spk = SpikingNeuron(spec, T=T)(x)
    assert spk.shape == x.shape
    assert set(spk.unique().tolist()) <= {0.0, 1.0}
    rate = spk.view(T, B, n).mean(0)
    assert bool(((rate >= 0) & (rate <= 1)).all())


@settings(max_examples=100, deadline=None)
@given(frac=st.floats(0.0, 1.0), v_th=st.sampled_from([1.0, 0.5, 2.0, 0.3]), T=st.integers(1, 32),
       decay=st.floats(0.0, 1.0))
def test_if_rate_tends_to_input_over_threshold(frac: float, v_th: float, T: int, decay: float) -> None:
    """IF, soft reset, constant input x in [0, v_th]: after T steps |rate - x / v_th| <= 1 / T."""
    x = frac * v_th
    spec = NeuronSpec(kind="if", decay=decay, v_th=v_th, reset="soft")
    spk = neuron_multistep(torch.full((T, 1), x, dtype=torch.float64), spec)
    rate = spk.mean().item()
    assert abs(rate - x / v_th) <= 1 / T + 1e-9
