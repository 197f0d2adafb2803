"""Folding a calibrated student's per-channel thresholds and spike amplitudes into its weights.

A calibrated neuron (``scaling="channel"``) fires on channel c at its own threshold ``th_c`` and its spike is
worth ``A_c`` downstream. The LIF/IF dynamics with a hard or soft reset (and ``v_init`` a fraction of the
threshold) are positively homogeneous: scaling a channel's input current by ``k > 0`` scales its membrane by
``k`` and gives the same spikes at the threshold ``k * th_c``. So the same network, spike for spike, is:

    the spec's neuron (threshold v_th, spikes 0/1)  on the input current scaled by  v_th / th_c,
    and every layer reading the channel multiplying it by A_c.

Each tensor ``t`` of the calibrated network is ``t = S (.) t'`` of the folded one for a per-channel scale
``S`` (``S = 1`` on the image and the logits). Going through the traced graph (torch.fx, neurons as leaves):

    neuron                 S(input) must be th / v_th;   S(output) = A        (its spikes are now 0/1)
    BatchNorm              output scale r chosen:        weight, bias / r     (input scale s: mean / s,
                                                                              var + eps -> (var + eps) / s^2)
    conv / linear          output scale r chosen:        W[o, i] * S_in[i] / r[o], bias / r
    pool, flatten, ReLU,   S passes through (each is positively homogeneous per channel)
    dropout, identity
    a + b                  both operands brought to the add's scale: a BatchNorm or conv branch takes it
                           as its output scale; an operand that cannot (a shortcut carrying spikes) gets a
                           ``ChannelScale`` on that edge (``downsample`` of a residual block without one)

The output scale of a BatchNorm or conv is chosen where its only reader needs one (a neuron's input, an add
that feeds one), 1 elsewhere; so the feature before the classifier keeps its scale (with RepAct: the same
values, which L_AF scores through the teacher's head). The only per-channel values left are the
``ChannelScale`` of identity shortcuts, the smallest change that keeps the network exact: ``A_prev * v_th /
th_next`` per channel. ``fold_calibration`` checks the result against the unfolded student (the same spikes
everywhere, logits to rounding) and raises FoldError naming the first layer that differs.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from enofctl.errors import CalibrationError, ConversionError
from enofctl.spiking.bn import BatchNorm, rescale_bn
from enofctl.spiking.neuron import SpikingNeuron


class FoldError(CalibrationError):
    """The folded student does not compute what the calibrated one did: a failed conversion (exit 1)."""


class FoldUnsupported(ConversionError):
    """The network's graph has a shape the fold does not handle (nothing was changed)."""


class ChannelScale(nn.Module):
    """``x * scale`` per channel (dimension 1): the factor an identity shortcut carries in a folded student."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(-1, *([1] * (x.dim() - 2))).to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.scale.numel()}"


def install_shortcut_scales(body: nn.Module, scales: dict[str, int]) -> None:
    """Put a ``ChannelScale`` of the given channel count at each named attribute (the folded spec's
    ``shortcut_scales``), so a saved folded student's tensors fit the rebuilt network."""
    for name, channels in scales.items():
        parent_name, _, attr = name.rpartition(".")
        parent = body.get_submodule(parent_name) if parent_name else body
        if getattr(parent, attr, None) is not None:
            raise ConversionError(f"cannot place a shortcut scale at {name!r}: the module already has one there")
        setattr(parent, attr, ChannelScale(channels))


_PASS_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout,
                 nn.Identity, nn.ReLU)
_PASS_FUNCTIONS = (F.adaptive_avg_pool2d, F.avg_pool2d, F.max_pool2d, F.adaptive_max_pool2d, F.relu, F.dropout,
                   torch.flatten)
_PASS_METHODS = ("flatten", "relu", "contiguous")
_ADDS = (operator.add, torch.add, operator.iadd)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, SpikingNeuron | ChannelScale) or super().is_leaf_module(m, name)


@dataclass
class _Graph:
    body: nn.Module
    graph: fx.Graph

    def module(self, node: fx.Node) -> nn.Module | None:
        return self.body.get_submodule(node.target) if node.op == "call_module" else None

    def is_neuron(self, node: fx.Node) -> bool:
        return isinstance(self.module(node), SpikingNeuron)

    def is_affine(self, node: fx.Node) -> bool:
        """A BatchNorm, conv or linear layer: its output scale can be chosen."""
        return isinstance(self.module(node), BatchNorm | nn.Conv2d | nn.Conv1d | nn.Linear)

    def is_pass(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.module(node), _PASS_MODULES)
        if node.op == "call_function":
            return node.target in _PASS_FUNCTIONS
        return node.op == "call_method" and node.target in _PASS_METHODS

    def is_add(self, node: fx.Node) -> bool:
        return node.op == "call_function" and node.target in _ADDS or \
            node.op == "call_method" and node.target in ("add", "add_", "__add__")


def _trace(body: nn.Module) -> _Graph:
    try:
        return _Graph(body, _Tracer().trace(body))
    except Exception as e:  # data-dependent control flow, unsupported ops: many types
        raise FoldUnsupported(f"cannot trace the student to fold its calibration ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160] if str(e) else ''})") from e


def _require(g: _Graph, node: fx.Node, r: torch.Tensor, wanted: dict[fx.Node, torch.Tensor]) -> None:
    """Ask ``node`` to produce its tensor at scale ``r`` (pass 1)."""
    if node in wanted:
        if not torch.allclose(wanted[node], r, rtol=1e-6, atol=0):
            raise FoldUnsupported(f"{node.name} is read at two different scales")
        return
    if len(node.users) != 1 and not g.is_add(node):
        return  # several readers: it keeps scale 1 / passes its input's; an add after it reconciles
    if g.is_affine(node) or g.is_add(node):
        wanted[node] = r
        if g.is_add(node):
            for a in node.args:
                if isinstance(a, fx.Node) and (g.is_affine(a) or g.is_pass(a) or g.is_add(a)):
                    _require(g, a, r, wanted)
    elif g.is_pass(node) and isinstance(node.args[0], fx.Node) and not g.is_neuron(node.args[0]):
        _require(g, node.args[0], r, wanted)


def _channels_of(S: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``S`` (a scalar or [C]) as a [C] vector for a tensor of ``like``'s channel count."""
    return S.expand(like.shape[0]).clone() if S.numel() == 1 else S


def _fold_affine(m: nn.Module, s_in: torch.Tensor, r: torch.Tensor) -> None:
    """``m`` (in place) reads its input at scale ``s_in`` and writes at scale ``r``."""
    if isinstance(m, BatchNorm):
        try:
            rescale_bn(m, _channels_of(s_in, m.running_mean).to(m.running_mean),
                       _channels_of(r, m.running_mean).to(m.running_mean))
        except ValueError as e:  # no affine parameters to take the output scale
            raise FoldUnsupported(str(e)) from e
        return
    w = m.weight.data  # [O, I, ...]
    s_in = _channels_of(s_in, w[0]).to(w)
    r = _channels_of(r, w[:, 0]).to(w)
    if s_in.numel() != w.shape[1]:  # a linear layer after flattening C x H x W: each channel's block of inputs
        s_in = s_in.repeat_interleave(w.shape[1] // s_in.numel())
    w.mul_(s_in.view(1, -1, *([1] * (w.dim() - 2)))).div_(r.view(-1, *([1] * (w.dim() - 1))))
    if m.bias is not None:
        m.bias.data.div_(r)


def _block_input_attr(g: _Graph, add: fx.Node, operand: fx.Node) -> str | None:
    """Where a ``ChannelScale`` can sit on ``operand``'s edge into ``add``: ``<block>.downsample`` when the add
    is in a residual block whose ``downsample`` is None and ``operand`` is the block's input."""
    stack = add.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    block_name = list(stack)[-1]
    block = g.body.get_submodule(block_name) if block_name else g.body
    if not hasattr(block, "downsample") or block.downsample is not None:
        return None
    own = [n for n in g.graph.nodes if n.op == "call_module" and str(n.target).startswith(block_name + ".")]
    if not own or operand in own:
        return None
    first = own[0]  # the block's first layer reads the block's input
    return f"{block_name}.downsample" if operand in first.args else None


def _wanted_scales(g: _Graph, nodes: list[fx.Node]) -> dict[fx.Node, torch.Tensor]:
    """Pass 1: the output scale each BatchNorm, conv or add is asked for (what the neuron reading it needs of
    its input)."""
    wanted: dict[fx.Node, torch.Tensor] = {}
    for node in nodes:
        if g.is_neuron(node):
            neuron = g.module(node)
            if neuron.scaling != "channel":
                raise FoldUnsupported(f"{node.target} is not a per-channel calibrated neuron")
            v_th = neuron.spec.v_th
            _require(g, node.args[0], neuron.v_th.detach().double().cpu() / v_th, wanted)
    for node in nodes:  # adds not asked for (e.g. feeding RepAct's ReLU) keep scale 1
        if g.is_add(node) and node not in wanted:
            _require(g, node, torch.ones(1, dtype=torch.float64), wanted)
    return wanted


def _scale_shortcuts(g: _Graph, add: fx.Node, S: dict[fx.Node, torch.Tensor], r: torch.Tensor) -> dict[str, int]:
    """Bring every operand of ``add`` to its scale ``r``: an operand at another scale (a shortcut carrying
    spikes) gets a ``ChannelScale`` on its edge. Returns the scales placed (module name -> channels)."""
    body, one, placed = g.body, torch.ones(1, dtype=torch.float64), {}
    for a in [a for a in add.args if isinstance(a, fx.Node)]:
        s_a = S.get(a, one)
        if torch.allclose(_channels_of(s_a, r), _channels_of(r, s_a), rtol=1e-9, atol=0):
            continue
        attr = _block_input_attr(g, add, a)
        if attr is None:
            where = list(add.meta.get("nn_module_stack") or [""])[-1]
            raise FoldUnsupported(f"cannot fold the add in {where!r}: an operand carries spikes of "
                                  "another scale and there is no shortcut to scale")
        scale = _channels_of(s_a, r) / _channels_of(r, s_a)
        install_shortcut_scales(body, {attr: scale.numel()})
        body.get_submodule(attr).to(next(body.parameters()).device).scale.copy_(scale.float())
        placed[attr] = scale.numel()
    return placed


@torch.no_grad()
def fold_calibration(snn: nn.Module) -> dict[str, int]:
    """Fold every ``scaling="channel"`` neuron of ``snn`` (a SpikingNet) into the spec's neuron, in place: the
    thresholds into the layers before it, the amplitudes into the layers after, identity shortcuts given a
    ``ChannelScale``. Returns the shortcut scales placed (module name -> channels), for the spec. The
    neurons keep their buffers' names as scaling "none" neurons: the caller rebuilds the spec."""
    body = snn.body
    g = _trace(body)
    nodes = list(g.graph.nodes)
    wanted = _wanted_scales(g, nodes)
    S: dict[fx.Node, torch.Tensor] = {}
    placed: dict[str, int] = {}
    one = torch.ones(1, dtype=torch.float64)
    for node in nodes:  # pass 2: fold, in forward order
        ins = [S.get(a, one) for a in node.args if isinstance(a, fx.Node)]
        if node.op in ("placeholder", "get_attr", "output"):
            S[node] = one
        elif g.is_neuron(node):
            neuron = g.module(node)
            need = neuron.v_th.detach().double().cpu() / neuron.spec.v_th
            if not torch.allclose(_channels_of(ins[0], need), need, rtol=1e-9, atol=0):
                raise FoldUnsupported(f"cannot fold {node.target}: its input current cannot be scaled per channel "
                                "(no BatchNorm or convolution feeds it alone)")
            S[node] = neuron.amp.detach().double().cpu()
        elif g.is_affine(node):
            r = wanted.get(node, one)
            _fold_affine(g.module(node), ins[0], r)
            S[node] = r
        elif g.is_pass(node):
            S[node] = ins[0] if ins else one
        elif g.is_add(node):
            S[node] = wanted[node]
            placed.update(_scale_shortcuts(g, node, S, S[node]))
        elif all(torch.all(s == 1) for s in ins):
            S[node] = one  # an op we do not know, on unscaled inputs: nothing to fold
        else:
            raise FoldUnsupported(f"cannot fold through {node.op} {node.target}: it reads a channel-scaled tensor")
    out = [a for a in nodes if a.op == "output"][0].args[0]
    if isinstance(out, fx.Node) and not torch.all(S.get(out, one) == 1):
        raise FoldUnsupported("the folded student's logits would be scaled")
    for node in nodes:
        if g.is_neuron(node):
            _plain_neuron(g.module(node))
    return placed


def _plain_neuron(neuron: SpikingNeuron) -> None:
    """The neuron as the spec's: threshold v_th, spikes of 1 (its per-channel buffers dropped)."""
    del neuron.v_th
    del neuron.amp
    neuron.scaling = "none"


def spike_record(snn: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every neuron's spikes (0/1, before any amplitude) when ``snn`` runs on ``x``, by neuron name."""
    got: dict[str, torch.Tensor] = {}
    hooks = []
    for name, m in snn.neurons().items():
        def hook(mod, inp, out, name=name):
            spk = out if mod.scaling == "none" else (out != 0)
            got[name] = spk.detach().to(torch.bool).clone()
        hooks.append(m.register_forward_hook(hook))
    try:
        snn(x)
    finally:
        for h in hooks:
            h.remove()
    return got


@torch.no_grad()
def check_folded(before: nn.Module, after: nn.Module, batches: Sequence[torch.Tensor], *,
                 rtol: float = 1e-4, atol: float = 1e-4, tie_fraction: float = 1e-2,
                 agreement: float = 0.995) -> float:
    """Raise FoldError naming the first neuron whose spikes differ between ``before`` (calibrated) and ``after``
    (folded) on ``batches`` beyond float ties, or when the logits differ beyond rounding. A tie is a membrane
    on the threshold to within rounding: the fold multiplies in another order, so such a spike may flip, and
    the flip moves the layers after it a little (at most ``tie_fraction`` of a layer's spikes; a wrong fold
    changes far more). Without a flip the logits must agree to ``rtol``/``atol``; with flips, the top-1 of at
    least ``agreement`` of the images. Returns the largest logit difference."""
    worst, same, n = 0.0, 0, 0
    flipped = False
    for x in batches:
        a, b = spike_record(before, x), spike_record(after, x)
        for name, sa in a.items():
            flips = int((sa != b[name]).sum())
            flipped |= flips > 0
            if flips > max(2, tie_fraction * sa.numel()):
                raise FoldError(f"folding changed the spikes of {name} ({flips} of {sa.numel()} differ); "
                                "nothing was written")
        za, zb = before(x), after(x)
        worst = max(worst, float((za - zb).abs().max()))
        same += int((za.argmax(1) == zb.argmax(1)).sum())
        n += len(x)
        if not flipped and not torch.allclose(za, zb, rtol=rtol, atol=atol * max(1.0, float(za.abs().max()))):
            raise FoldError(f"folding changed the logits by up to {worst:.3g}; nothing was written")
    if same < agreement * n:
        raise FoldError(f"folding changed the prediction of {n - same} of {n} images; nothing was written")
    return worst
