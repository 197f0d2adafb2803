"""ANN -> spiking network: which modules are swapped, the weights kept, and the folded-time forward checked
against a per-step loop written here."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from enofctl.errors import ConversionError
from enofctl.models import build_model
from enofctl.schema import NeuronSpec, SpikingSpec
from enofctl.spiking import (
    SpikingNet,
    SpikingNeuron,
    activation_order,
    ann_forward_with_feature,
    make_spiking,
)

K = 5  # classes

# (timm name, kwargs, input size). vgg11 with a narrow pre-logits MLP: the same modules, 16M instead of 129M
# parameters.
MODELS = [
    ("resnet20", {"width": 0.125}, (3, 16, 16)),
    ("resnet19", {"width": 0.125}, (3, 16, 16)),
    ("test_resnet", {}, (3, 32, 32)),
    ("vgg11", {"mlp_ratio": 0.0625}, (3, 32, 32)),
]


def _get(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


@pytest.mark.parametrize("repact", [True, False], ids=["repact", "allspike"])
@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=[m[0] for m in MODELS])
def test_make_spiking_swaps_every_relu(name: str, kwargs: dict, size: tuple[int, int, int],
                                       repact: bool) -> None:
    teacher = build_model(name, K, 3, kwargs).eval()
    order = activation_order(teacher, size)
    relus = {n for n, m in teacher.named_modules() if isinstance(m, nn.ReLU)}
    assert len(order) > 2 and set(order) == relus  # every ReLU is called, each once

    student = make_spiking(teacher, SpikingSpec(T=2, repact=repact), size)
    assert isinstance(student, SpikingNet) and student.T == 2
    for n in order[:-1]:
        m = _get(student.body, n)
        assert isinstance(m, SpikingNeuron) and m.T == 2, n
    last = _get(student.body, order[-1])
    if repact:
        assert type(last) is nn.ReLU
        assert list(student.neurons()) == order[:-1]
    else:
        assert isinstance(last, SpikingNeuron)
        assert list(student.neurons()) == order
    # no other ReLU is left anywhere, and the teacher is untouched
    left = [n for n, m in student.body.named_modules() if isinstance(m, nn.ReLU)]
    assert left == ([order[-1]] if repact else [])
    assert all(isinstance(_get(teacher, n), nn.ReLU) for n in order)
    # the swapped modules are called in the same order as the originals
    assert activation_order(student.body, size) == order

    # same weights and buffers
    sd_t, sd_s = teacher.state_dict(), student.body.state_dict()
    assert list(sd_s) == list(sd_t)
    for k in sd_t:
        assert torch.equal(sd_s[k], sd_t[k]), k

    x = torch.randn(2, *size)
    with torch.no_grad():
        y = student.eval()(x)
    assert y.shape == (2, K)
    assert torch.isfinite(y).all()


# ----------------------------------------------------------------------------------------------------------
# reference: the same network run one step at a time, neurons keeping their membrane between calls


class StepNeuron(nn.Module):
    """A plain single-step LIF/IF neuron keeping its membrane across forward calls (one call = one step)."""

    def __init__(self, spec: NeuronSpec):
        super().__init__()
        self.spec, self.v = spec, None
        self.rates: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        decay = 1.0 if s.kind == "if" else s.decay
        u = x if self.v is None else decay * self.v + x
        spk = (u > s.v_th).to(x.dtype)
        self.v = u * (1 - spk) if s.reset == "hard" else u - spk * s.v_th
        self.rates.append(spk.mean().item())
        return spk


def stepwise_feature(teacher: nn.Module, spec: SpikingSpec, size, x: torch.Tensor):
    """Per-step features [T, B, F] of ``teacher``, ReLUs replaced by StepNeurons (last: ReLU w/ RepAct)."""
    ref = copy.deepcopy(teacher).eval()
    order = activation_order(ref, size)
    neurons = []
    for i, n in enumerate(order):
        new = nn.ReLU() if (i == len(order) - 1 and spec.repact) else StepNeuron(spec.neuron)
        parent, _, child = n.rpartition(".")
        setattr(ref.get_submodule(parent) if parent else ref, child, new)
        neurons.append(new)
    with torch.no_grad():
        feats = [ref.forward_head(ref.forward_features(x), pre_logits=True) for _ in range(spec.T)]
    return torch.stack(feats), [m for m in neurons if isinstance(m, StepNeuron)]


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("repact", [True, False], ids=["repact", "allspike"])
@pytest.mark.parametrize("T", [1, 2, 3])
def test_forward_feature_equals_stepwise_loop(tiny_resnet20, T: int, repact: bool, reset: str) -> None:
    teacher, size = tiny_resnet20
    spec = SpikingSpec(T=T, repact=repact, neuron=NeuronSpec(reset=reset))
    x = torch.randn(3, *size)  # distinct samples: a wrong T/B folding mixes them up

    feats, step_neurons = stepwise_feature(teacher, spec, size, x)
    rates = [r for m in step_neurons for r in m.rates]
    assert max(rates) > 0 and min(rates) < 1  # the network is neither silent nor saturated
    if T > 1:
        assert not torch.equal(feats[0], feats[1])  # the membrane carries over, so steps differ

    student = make_spiking(teacher, spec, size).eval()
    with torch.no_grad():
        f_s = student.forward_feature(x)
        logits, f_s2 = student.forward_with_feature(x)
    torch.testing.assert_close(f_s, feats.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f_s2, f_s)
    # the student's own classifier (the teacher's weights) on the time-averaged feature
    torch.testing.assert_close(logits, teacher.get_classifier()(f_s))
    torch.testing.assert_close(student(x), logits)
    if not repact:  # an all-spiking feature is a mean of binary values: a multiple of 1 / (T * pooled area)
        assert bool(((f_s >= 0) & (f_s <= 1)).all())


def test_repact_feature_is_analog_and_t1_matches_hand_computation(tiny_resnet20) -> None:
    """T = 1 with RepAct: every neuron is a Heaviside step at v_th, the last activation a ReLU."""
    teacher, size = tiny_resnet20
    x = torch.randn(2, *size)
    student = make_spiking(teacher, SpikingSpec(T=1), size).eval()

    class Step(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return (z > 0.5).float()

    hand = copy.deepcopy(teacher)
    order = activation_order(hand, size)
    for n in order[:-1]:
        parent, _, child = n.rpartition(".")
        setattr(hand.get_submodule(parent), child, Step())
    with torch.no_grad():
        f = hand.forward_head(hand.forward_features(x), pre_logits=True)
        torch.testing.assert_close(student.forward_feature(x), f)
        torch.testing.assert_close(student(x), hand(x))
    # full precision: not restricted to the multiples of 1/4 a 2x2-pooled binary map would give
    assert not torch.allclose(f * 4, (f * 4).round())


def test_set_T_changes_every_neuron(tiny_resnet20) -> None:
    teacher, size = tiny_resnet20
    x = torch.randn(2, *size)
    student = make_spiking(teacher, SpikingSpec(T=2), size).eval()
    for T in (3, 1):
        student.set_T(T)
        assert student.T == T and student.spec.T == T
        assert student.neurons() and all(m.T == T for m in student.neurons().values())
        fresh = make_spiking(teacher, SpikingSpec(T=T), size).eval()
        with torch.no_grad():
            y = student(x)
            assert y.shape == (2, 10)
            torch.testing.assert_close(y, fresh(x))


def test_mode_sets_and_restores_the_flags_nested_and_on_error(tiny_resnet20) -> None:
    teacher, size = tiny_resnet20
    net = make_spiking(teacher, SpikingSpec(T=2), size)
    assert net.stem_once
    first = net.neurons()[net.first_neuron]
    first.repeat_input = True
    flags = lambda: (net.stem_once, [m.repeat_input for m in net.neurons().values()])  # noqa: E731
    before = flags()
    with net.every_step():
        assert not net.stem_once and not any(flags()[1])
        with net.mode(stem_once=True):
            assert net.stem_once and not any(flags()[1])
        assert flags() == (False, [False] * len(before[1]))
        with pytest.raises(RuntimeError), net.mode(repeat_input=True):
            assert all(flags()[1])
            raise RuntimeError("inside")
        assert flags() == (False, [False] * len(before[1]))
    assert flags() == before


def test_evaluating_restores_the_training_mode_and_capture_stops_early() -> None:
    from enofctl.spiking.probe import capture, evaluating

    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).train()
    with pytest.raises(RuntimeError), evaluating(net):
        assert not net.training and not torch.is_grad_enabled()
        raise RuntimeError("inside")
    assert net.training and torch.is_grad_enabled()
    x = torch.randn(5, 3)
    got, out = capture(net, {"relu": net[1], "fc": net[0]}, x, stop_after="relu")
    assert out is None and set(got) == {"relu", "fc"}
    torch.testing.assert_close(got["relu"], torch.relu(net[0](x)))
    got, out = capture(net, {"last": net[2]}, x, what="input", clone=True)
    torch.testing.assert_close(out, net(x))
    torch.testing.assert_close(got["last"], got["last"].clamp(min=0))


def test_ann_forward_with_feature(tiny_resnet20) -> None:
    teacher, size = tiny_resnet20
    x = torch.randn(2, *size)
    with torch.no_grad():
        logits, f = ann_forward_with_feature(teacher, x)
        torch.testing.assert_close(logits, teacher(x))
        assert f.shape == (2, teacher.num_features)
        student = make_spiking(teacher, SpikingSpec(T=2), size).eval()
        ls, fs = ann_forward_with_feature(student, x)
        torch.testing.assert_close(ls, student(x))
        torch.testing.assert_close(fs, student.forward_feature(x))


# ----------------------------------------------------------------------------------------------------------
# refusals


class TinyNet(nn.Module):
    """A minimal timm-contract CNN. ``shared=True`` reuses one activation module twice."""

    def __init__(self, act: type[nn.Module] | None = nn.ReLU, shared: bool = False, num_classes: int = K):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.act1 = act() if act else nn.Identity()
        self.act2 = self.act1 if shared else (act() if act else nn.Identity())
        self.num_features = 4
        self.fc = nn.Linear(4, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def test_tiny_net_converts() -> None:
    student = make_spiking(TinyNet(), SpikingSpec(T=2), (3, 8, 8))
    assert list(student.neurons()) == ["act1"] and type(student.body.act2) is nn.ReLU
    assert student(torch.randn(3, 3, 8, 8)).shape == (3, K)


def test_silu_resnet_is_refused_naming_the_module() -> None:
    model = build_model("resnet20", 10, 3, {"width": 0.125, "act_layer": nn.SiLU})
    with pytest.raises(ConversionError, match=r"'stem\.2'.*SiLU"):
        make_spiking(model, SpikingSpec(T=2), (3, 16, 16))


@pytest.mark.parametrize("act", [nn.GELU, nn.Sigmoid, nn.LeakyReLU, "timm_gelu"])
def test_non_relu_activation_is_refused(act) -> None:
    if act == "timm_gelu":
        from timm.layers import get_act_layer

        act = get_act_layer("gelu")
    with pytest.raises(ConversionError, match=rf"'act1' \({act.__name__}\)"):
        make_spiking(TinyNet(act), SpikingSpec(T=2), (3, 8, 8))


def test_attention_is_refused_naming_the_module() -> None:
    vit = build_model("test_vit", K, 3, {"img_size": 32})
    with pytest.raises(ConversionError, match=r"'blocks\.0\.attn'.*attention"):
        make_spiking(vit, SpikingSpec(T=2), (3, 32, 32))


def test_activation_used_twice_is_refused() -> None:
    with pytest.raises(ConversionError, match=r"'act1'.*more than once"):
        make_spiking(TinyNet(shared=True), SpikingSpec(T=2), (3, 8, 8))


def test_model_without_activation_modules_is_refused() -> None:
    with pytest.raises(ConversionError, match="no activation modules"):
        make_spiking(TinyNet(act=None), SpikingSpec(T=2), (3, 8, 8))


def test_conversion_error_is_a_usage_error() -> None:
    from enofctl.errors import UsageError

    assert issubclass(ConversionError, UsageError) and ConversionError.exit_code == 2


@pytest.mark.parametrize("size", [(5, 16, 16), (3, 1, 16), (3, -6, 16)])
def test_input_size_that_does_not_fit_is_refused(tiny_resnet20, size) -> None:
    teacher, _ = tiny_resnet20
    with pytest.raises(ConversionError, match=r"cannot run the model on an input of size \(" + str(size[0])):
        make_spiking(teacher, SpikingSpec(T=2), size)
