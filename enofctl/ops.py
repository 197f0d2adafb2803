"""Synaptic operations, multiply-accumulates, activation sparsity and the energy estimate of a network.

One rule for every conv / linear layer (docs/reading-eval.md): **a layer is counted on the input it
actually receives, at every call**, so a count is one of a computation the network does.

- an input that is binary (every element 0 or one same positive amplitude: spikes) costs one accumulate per
  input spike and per synapse it reaches: SOPs (= ACs) = sum over input spikes of their fan-out;
- an input that is analog (the directly encoded image, a conv after an average pool, a classifier fed the
  time-averaged feature) costs multiply-accumulates, in two conventions:
  *dense* MACs (``macs``): every tap of every output, zero-padding taps and zero inputs included (the count
  of the SNN energy papers, what an accelerator without zero skipping does);
  *effective* MACs (``macs_effective``): only the pairs of a non-zero input and a non-zero weight, padding
  taps excluded (NeuroBench's ``Effective_MACs``, what a zero-skipping accelerator does);
- ``synapses``: the dense count of every layer whatever its input, padding taps excluded and zero weights
  included (NeuroBench's ``Dense``);
- the classifier of a SpikingNet runs once per sample on the feature averaged over T, so it is counted once,
  on that input: with RepAct the ReLU's real-valued output, without RepAct the time-averaged (pooled) spikes;
  both are analog (multiples of 1/T), hence MACs (a classifier whose averaged input happens to be 0/1 at
  T = 1 reads spikes and does ACs);
- under direct encoding the first layers run at every step (the papers' convention, whatever shortcut
  training takes); event counts fed to the first layer cost one accumulate per event;
- energy = MACs * E_MAC + SOPs * E_AC, with Horowitz (2014), 45 nm, 32-bit float: E_MAC = 4.6 pJ,
  E_AC = 0.9 pJ; ``energy_pj`` uses dense MACs, ``energy_effective_pj`` effective ones. The ANN's energy is
  its dense MACs * E_MAC (see ``dense_macs``).

Biases, norms, pools and neurons are not counted, nor a folded student's ``ChannelScale`` on an identity
shortcut (one factor per channel on the spikes the shortcut carries into the next neuron's sum: not a layer
of synapses, and NeuroBench, which counts conv / linear layers only, leaves it out too; on hardware it is at
most one accumulate per shortcut spike, i.e. the previous block's output spikes).

SOPs count every synapse a spike reaches (zero weights included); NeuroBench's ``Effective_ACs`` skips
zero weights, so the two are equal when no conv / linear weight is exactly 0 (connection sparsity 0, as in
the digits networks of benchmarks/neurobench_digits.md). A conv's exact SOP count,
without a loop over spikes: sum the input over the channels of each group, convolve with an all-ones kernel
``[G, 1, *k]`` using the layer's stride / padding / dilation and ``groups=G``, so each output position holds
the spikes of its receptive field; the sum over output positions is the number of (spike, output position)
pairs, and every such pair feeds the ``out_channels / G`` output channels of the group. Effective MACs
convolve the non-zero mask of the input with the non-zero mask of the weights.

Activation sparsity (``activation_sparsity``) is the fraction of zero outputs of the activation modules
(``ACTIVATIONS``): of the spiking neurons only, and of every activation (RepAct's ReLU, an ANN's ReLUs)
as NeuroBench counts it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from enofctl.config.evaluate import E_AC_PJ, E_MAC_PJ  # pJ per MAC / AC, 45 nm (Horowitz 2014)
from enofctl.models.acts import BOUNDED
from enofctl.schema.report import LayerKind as Kind
from enofctl.schema.report import LayerOps
from enofctl.spiking import SpikingNet, SpikingNeuron
from enofctl.spiking.probe import evaluating

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
# the modules whose outputs are activations (activation sparsity; NeuroBench is told of the same ones)
ACTIVATIONS: tuple[type[nn.Module], ...] = (SpikingNeuron, nn.ReLU, nn.ReLU6, nn.Sigmoid, *BOUNDED)


def is_binary(x: torch.Tensor) -> bool:
    """Whether ``x`` is spikes: every element 0 or one same positive amplitude (1, or the threshold an
    integrate-and-fire neuron of a converted QCFS network emits). An empty tensor counts as binary."""
    if x.numel() == 0:
        return True
    top = x.max()
    return bool(top >= 0) and bool(((x == 0) | (x == top)).all())


def conv_sops(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> int:
    """Exact accumulates of ``conv`` on a binary input ``x`` ([N, C, *spatial] or unbatched [C, *spatial])."""
    _check_conv(conv)
    nd, G = len(conv.kernel_size), conv.groups
    if x.dim() == nd + 1:
        x = x.unsqueeze(0)  # unbatched input
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        per_group = x.detach().float().unflatten(1, (G, -1)).sum(2)  # [N, G, *spatial], spikes per group
        ones = per_group.new_ones(G, 1, *conv.kernel_size)
        reach = _CONV_FN[nd](per_group, ones, stride=conv.stride, padding=conv.padding,
                             dilation=conv.dilation, groups=G)  # [N, G, *out]: spikes in each receptive field
        pairs = reach.sum(dtype=torch.float64).item()  # (spike, output position) pairs, exact integer
    return round(pairs) * (conv.out_channels // G)


def conv_macs(conv: nn.modules.conv._ConvNd, out: torch.Tensor) -> int:
    """Dense multiply-accumulates of ``conv`` given its output: each output element sums a receptive field."""
    return out.numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)


def conv_effective_macs(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> int:
    """Multiply-accumulates of ``conv`` on ``x`` that pair a non-zero input with a non-zero weight (padding taps
    hold no input, so they are not counted): the non-zero masks convolved, summed."""
    _check_conv(conv)
    nd = len(conv.kernel_size)
    if x.dim() == nd + 1:
        x = x.unsqueeze(0)
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        pairs = _CONV_FN[nd]((x.detach() != 0).float(), (conv.weight.detach() != 0).float(), stride=conv.stride,
                             padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
        return round(pairs.sum(dtype=torch.float64).item())  # each element <= C*k: exact in float32


def conv_synapses(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> int:
    """Every (input, weight) pair ``conv`` reads on an input of ``x``'s shape, padding taps excluded."""
    nd = len(conv.kernel_size)
    n = 1 if x.dim() == nd + 1 else x.shape[0]
    one = x.new_ones(1, *x.shape[-(nd + 1):])
    return n * conv_sops(conv, one)


def linear_sops(linear: nn.Linear, x: torch.Tensor) -> int:
    """Accumulates of ``linear`` on a binary input of any leading shape: each spike reaches out_features."""
    with torch.no_grad():
        spikes = x.detach().sum(dtype=torch.float64).item()
    return round(spikes) * linear.out_features


def linear_macs(linear: nn.Linear, x: torch.Tensor) -> int:
    """Dense multiply-accumulates of ``linear`` on an input of any leading shape ``[..., in_features]``."""
    return (x.numel() // linear.in_features) * linear.in_features * linear.out_features


def linear_effective_macs(linear: nn.Linear, x: torch.Tensor) -> int:
    """Multiply-accumulates of ``linear`` on ``x`` that pair a non-zero input with a non-zero weight."""
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        nz = (x.detach() != 0).reshape(-1, linear.in_features).float()  # [N, in]
        fan = (linear.weight.detach() != 0).sum(0, dtype=torch.float32)  # [in]: non-zero weights per input
        return round((nz @ fan.to(nz.dtype)).sum(dtype=torch.float64).item())


def event_sops(layer: nn.Module, counts: torch.Tensor) -> int:
    """Accumulates of a conv or linear layer fed event counts (non-negative integers, e.g. a DVS frame): a
    pixel that saw ``k`` events is ``k`` input spikes, each reaching the layer's fan-out."""
    if isinstance(layer, nn.Linear):
        return linear_sops(layer, counts)
    return conv_sops(layer, counts)


def _is_counts(seen: torch.Tensor | None, x: torch.Tensor) -> bool:
    """Whether ``x`` is the event-count input recorded as ``seen`` (same storage and size, whole numbers >= 0)."""
    if seen is None or seen.numel() != x.numel() or x.numel() == 0:
        return False
    return bool((x >= 0).all()) and bool((x == x.round()).all())


def _check_conv(conv: nn.modules.conv._ConvNd) -> None:
    if conv.padding_mode != "zeros":
        raise ValueError(f"cannot count the operations of {conv}: padding_mode={conv.padding_mode!r} "
                         "(only 'zeros' is supported)")


class OpsMeter:
    """Counts SOPs (binary input) and MACs (analog input: dense and effective) of every conv and linear layer,
    by forward hooks, each on the input the layer receives (the module docstring's rule).

    Counts accumulate over all forward calls until ``reset()``; a spiking net's layers see ``[T*B, ...]``,
    so its counts cover all T steps. Layer names are relative to ``root`` (default: ``model.body`` for a
    SpikingNet, so they match the teacher's; otherwise ``model``). ``force_analog``: every input counts as
    analog (an ANN multiplies in every layer, whatever its input happens to be); ``effective=False`` skips
    the effective counts (one conv per analog call).

    While attached, a SpikingNet runs its first layers at every step (``stem_once`` off): the figures follow
    the papers' convention that every layer computes at every step, whatever shortcut training takes.

    A layer's input is matched to a neuron's output (spikes of per-channel amplitude) or to the event frames
    by its storage address, ``data_ptr()``, not by tensor identity: between the neuron and the layer there
    may be views (flatten, reshape, an eval-mode dropout, an identity) that are new tensor objects on the
    same memory. A match cannot be stale: the recorded tensors are held until the model's next forward, so
    their memory is not freed and handed to another tensor meanwhile; and a view that is only part of the
    recorded tensor is told apart by its element count. A layer fed a copy (a pool's output, say) finds no
    match and is judged by its values (``is_binary``).
    """

    def __init__(self, model: nn.Module, root: nn.Module | None = None, force_analog: bool = False,
                 effective: bool = True):
        if root is None:
            root = model.body if isinstance(model, SpikingNet) else model
        self.force_analog, self.effective = force_analog, effective
        self.sops: dict[str, int] = {}
        self.macs: dict[str, int] = {}
        self.macs_effective: dict[str, int] = {}
        self.synapses: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.kinds: dict[str, set[str]] = {}
        self.types: dict[str, Literal["conv", "linear"]] = {}
        self._net = model if isinstance(model, SpikingNet) else None
        self._modes = contextlib.ExitStack()  # undone by close()
        if self._net is not None:
            self._modes.enter_context(self._net.mode(stem_once=False))
        rel = {id(m): n for n, m in root.named_modules()}
        # the outputs of neurons whose spikes carry per-channel amplitudes (a calibrated student), by storage,
        # kept alive until the model's next forward: a layer reading one (or a view of it) reads spikes
        self._scaled: dict[int, torch.Tensor] = {}
        self._hooks = [model.register_forward_pre_hook(lambda *_: self._forget())]
        # event encoding: the body's input is event counts; a layer reading it does one accumulate per event
        self._events: dict[int, torch.Tensor] = {}
        if self._net is not None and self._net.spec.encoding == "event":
            self._hooks.append(self._net.frames_in.register_forward_hook(
                lambda mod, args, out: self._events.__setitem__(out.data_ptr(), out)))
        for m in model.modules():
            if isinstance(m, SpikingNeuron) and m.scaling == "channel":
                self._hooks.append(m.register_forward_hook(
                    lambda mod, inp, out: self._scaled.__setitem__(out.data_ptr(), out)))
        for name, m in model.named_modules():
            if not isinstance(m, _CONVS + (nn.Linear,)):
                continue
            if isinstance(m, _CONVS):
                _check_conv(m)
            name = rel.get(id(m), name)  # a layer outside root keeps its name in model
            self._hooks.append(m.register_forward_hook(self._hook(name)))

    def _forget(self) -> None:
        """A new forward: the tensors recorded for the last one are no longer inputs."""
        self._scaled.clear()
        self._events.clear()

    def _hook(self, name: str):
        @torch.no_grad()
        def fn(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            x = inp[0]
            linear = isinstance(mod, nn.Linear)
            type_ = "linear" if linear else "conv"
            synapses = linear_macs(mod, x) if linear else conv_synapses(mod, x)
            if not self.force_analog and _is_counts(self._events.get(x.data_ptr()), x):
                self._count(name, type_, event_sops(mod, x), 0, 0, synapses, "spikes")
                return
            scaled = self._scaled.get(x.data_ptr())
            from_neuron = scaled is not None and scaled.numel() == x.numel()
            binary = not self.force_analog and (from_neuron or is_binary(x))
            if binary:
                x = (x != 0).to(x.dtype)  # count events, whatever their amplitude
                sops = linear_sops(mod, x) if linear else conv_sops(mod, x)
                self._count(name, type_, sops, 0, 0, synapses, "spikes")
                return
            macs = linear_macs(mod, x) if linear else conv_macs(mod, out)
            eff = 0
            if self.effective:
                eff = linear_effective_macs(mod, x) if linear else conv_effective_macs(mod, x)
            self._count(name, type_, 0, macs, eff, synapses, "analog")

        return fn

    def _count(self, name: str, type_: Literal["conv", "linear"], sops: int, macs: int, macs_effective: int,
               synapses: int, kind: str) -> None:
        self.types[name] = type_
        self.sops[name] = self.sops.get(name, 0) + sops
        self.macs[name] = self.macs.get(name, 0) + macs
        self.macs_effective[name] = self.macs_effective.get(name, 0) + macs_effective
        self.synapses[name] = self.synapses.get(name, 0) + synapses
        self.calls[name] = self.calls.get(name, 0) + 1
        self.kinds.setdefault(name, set()).add(kind)

    def input_kind(self, name: str) -> Kind:
        kinds = self.kinds[name]
        return "mixed" if len(kinds) > 1 else next(iter(kinds))  # type: ignore[return-value]

    def reset(self) -> None:
        for d in (self.sops, self.macs, self.macs_effective, self.synapses, self.calls, self.kinds, self.types):
            d.clear()

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._forget()
        self._modes.close()

    def __enter__(self) -> OpsMeter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def rows(self, samples: int, e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ) -> list[LayerOps]:
        """Per-sample figures of every layer called since the last reset, in the order first called."""
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        out = []
        for name in self.calls:
            sops, macs = self.sops[name] / samples, self.macs[name] / samples
            eff = self.macs_effective[name] / samples
            out.append(LayerOps(name=name, type=self.types[name], input_kind=self.input_kind(name),
                                sops_per_sample=sops, macs_per_sample=macs, macs_effective_per_sample=eff,
                                synapses_per_sample=self.synapses[name] / samples,
                                energy_pj_per_sample=macs * e_mac + sops * e_ac,
                                energy_effective_pj_per_sample=eff * e_mac + sops * e_ac))
        return out


def totals(rows: Iterable[LayerOps]) -> dict[str, float]:
    """Per-sample totals over layers: ``{"sops", "macs", "energy_pj"}`` (dense MACs) and ``{"macs_effective",
    "synapses", "energy_effective_pj"}``."""
    rows = list(rows)
    return {
        "sops": sum(r.sops_per_sample for r in rows),
        "macs": sum(r.macs_per_sample for r in rows),
        "energy_pj": sum(r.energy_pj_per_sample for r in rows),
        "macs_effective": sum(r.macs_effective_per_sample for r in rows),
        "synapses": sum(r.synapses_per_sample for r in rows),
        "energy_effective_pj": sum(r.energy_effective_pj_per_sample for r in rows),
    }


def footprint(model: nn.Module) -> dict[str, float]:
    """Static figures of ``model``: ``footprint_bytes`` (parameters and buffers, as stored), ``parameters``
    and ``connection_sparsity`` (the fraction of conv / linear weights that are exactly 0)."""
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    weights = [m.weight for m in model.modules() if isinstance(m, _CONVS + (nn.Linear,))]
    n = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return {"footprint_bytes": size, "parameters": sum(p.numel() for p in model.parameters()),
            "connection_sparsity": zeros / n if n else 0.0}


def dense_macs(model: nn.Module, input_size: tuple[int, ...], root: nn.Module | None = None,
               e_mac: float = E_MAC_PJ) -> list[LayerOps]:
    """The ANN's MACs per sample: one eval-mode forward of a zero input, every layer counted as analog.

    For a SpikingNet, the figures of its body run as an ANN (one time step's worth of MACs), named as in
    the teacher.
    """
    rows, modes = 1, contextlib.nullcontext()
    if isinstance(model, SpikingNet):
        # its neurons unfold T rows per sample: feed T rows to the body (no time-averaging), divide by T;
        # every row is one step of one image, so no neuron may repeat its input over time here
        rows, modes = model.T, model.mode(repeat_input=False)
        model = model.body
        root = model if root is None else root
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    meter = OpsMeter(model, root, force_analog=True, effective=False)
    try:
        with evaluating(model), modes:
            model(torch.zeros(rows, *input_size, device=device, dtype=dtype))
    finally:
        meter.close()
    return meter.rows(rows, e_mac=e_mac, e_ac=0.0)
