"""The per-layer half of the NIR export (see `enofctl.spiking.nir_export` for the mapping): a conv, linear,
pool, flatten, shortcut scale or neuron of the traced student as a NIR node, and the scale factors that travel
along the edges between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from enofctl.errors import ConversionError, MissingDependencyError, UsageError
from enofctl.spiking.bn import BatchNorm, fold_bn_weights
from enofctl.spiking.fold import ChannelScale
from enofctl.spiking.neuron import SpikingNeuron


def import_nir():
    """The ``nir`` package, or a UsageError naming the extra to install."""
    try:
        import nir
    except ImportError as e:
        raise MissingDependencyError("--format nir needs the nir package: pip install 'enofctl[nir]'") from e
    return nir


def lif_tau(dt: float, decay: float) -> np.float32:
    """A float32 ``tau`` with ``fl(dt / tau) == fl(1 - decay)`` and ``fl(dt * fl(1 / tau))`` the same, so the
    readers' Euler coefficients round to enofctl's decay (searched among the floats next to ``dt/(1-d)``);
    the nearest float when no neighbour satisfies both."""
    a, target = np.float32(dt), np.float32(1.0 - np.float32(decay))
    first = np.float32(a / target)
    up, down = first, first
    for _ in range(256):
        for t in (up, down):
            if np.float32(a / t) == target and np.float32(a * np.float32(np.float32(1.0) / t)) == target:
                return t
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
    return first


@dataclass
class _Term:
    """One summand of a value in the graph: ``factor`` times the output of NIR node ``node``. ``private``:
    nothing else reads that output (so the node's weights may be rescaled for this consumer)."""

    node: str
    factor: np.ndarray = field(default_factory=lambda: np.float64(1.0))  # a number, or one per channel [C]
    private: bool = True


def _name(qualname: str) -> str:
    return qualname.replace(".", "_")


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SpikingNeuron | nn.ReLU | ChannelScale) or super().is_leaf_module(m, qualname)


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight``/``bias`` of a layer followed by ``bn`` (eval mode) as one layer, computed in float64."""
    w, b = fold_bn_weights(weight, bias, bn, dtype=torch.float64)
    return w.float(), b.float()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


def _same(a, b) -> bool:
    return bool(np.all(np.asarray(a) == np.asarray(b)))


def _channels(f, dims: int) -> np.ndarray:
    """A factor (a number or one per channel) shaped to broadcast over one sample ``[C, ...]`` of ``dims``."""
    f = np.asarray(f, dtype=np.float64)
    return f.reshape(-1, *([1] * (dims - 1))) if f.ndim else f


def _scaled(weight: torch.Tensor, f, dim: int) -> np.ndarray:
    """``weight`` times ``f`` (a number, or one per input channel/feature along ``dim``), in float32."""
    w = weight.detach().double().numpy()
    f = np.asarray(f, dtype=np.float64)
    if f.ndim:
        f = f.reshape([-1 if d == dim else 1 for d in range(w.ndim)])
    return (w * f).astype(np.float32)


def _pair(v) -> np.ndarray:
    return np.array(v if isinstance(v, tuple | list) else (v, v), dtype=np.int64)


class _LayerMapping:
    """The graph builder's per-layer steps. The builder (``nir_export._Builder``) holds ``nir`` (the package),
    ``nodes``, ``edges``, ``neurons``, ``shape`` (per-sample output shapes by fx node), ``dt`` and ``sum_pool``."""

    nir: Any
    nodes: dict[str, Any]
    edges: list[tuple[str, str]]
    neurons: dict[str, str]
    shape: dict[torch.fx.Node, tuple[int, ...]]
    dt: float
    sum_pool: bool

    # ------------------------------------------------------------------------------------------------------
    # edges, and scale factors moving along them

    def _connect(self, terms: list[_Term], dst: str) -> None:
        for t in terms:
            self.edges.append((t.node, dst))

    @staticmethod
    def _uniform(terms: list[_Term], what: str) -> np.ndarray:
        """The one scale factor all ``terms`` carry (a number or one per channel)."""
        first = terms[0].factor
        if any(not _same(t.factor, first) for t in terms[1:]):
            raise ConversionError(f"cannot export {what}: its inputs carry different scale factors (a sum pool or "
                                  "per-channel spike amplitudes on one branch only)")
        return first

    def _rescale(self, node: str, s: np.ndarray) -> None:
        """Multiply NIR node ``node``'s weights and bias by ``s`` (a number, or one per output channel): a conv
        or affine whose output only this consumer reads."""
        nd = self.nodes[node]
        s = np.asarray(s, dtype=np.float64)
        col = s.reshape(-1, *([1] * (nd.weight.ndim - 1))) if s.ndim else s
        nd.weight = (nd.weight * col).astype(np.float32)
        nd.bias = (nd.bias * s).astype(np.float32)

    def _neuron_input(self, terms: list[_Term], what: str) -> np.ndarray:
        """Make the terms into one NIR sum (rescaling private conv/affine producers where factors differ);
        returns the factor of that sum relative to the true input current."""
        fixed = [t.factor for t in terms if not self._scalable(t)]
        if any(not _same(f, fixed[0]) for f in fixed[1:]):
            raise ConversionError(f"cannot export {what}: it adds branches with different scale factors (a sum "
                                  "pool or per-channel spike amplitudes) that no layer can absorb")
        target = fixed[0] if fixed else terms[0].factor
        for t in terms:
            if not _same(t.factor, target):
                self._rescale(t.node, np.asarray(t.factor, dtype=np.float64) / target)
                t.factor = target
        return target

    def _scalable(self, t: _Term) -> bool:
        return t.private and isinstance(self.nodes[t.node], self.nir.Conv2d | self.nir.Affine)

    # ------------------------------------------------------------------------------------------------------

    def _module(self, n: torch.fx.Node, m: nn.Module, values, modules) -> list[_Term] | None:
        name = _name(n.target)
        ins = values[n.args[0]]
        shape_in = self.shape.get(n.args[0])
        if isinstance(m, nn.Conv2d | nn.Linear):
            return self._layer(n, m, ins, name, shape_in, modules)
        if isinstance(m, BatchNorm):
            src = n.args[0]
            if not (src.op == "call_module" and isinstance(modules[src.target], nn.Conv2d | nn.Linear)
                    and len(src.users) == 1):
                raise ConversionError(f"cannot export {n.target!r}: a BatchNorm is folded into the conv or linear "
                                      "layer before it, and this one follows something else")
            return ins  # folded into the producing layer (_folded)
        if isinstance(m, SpikingNeuron):
            return self._neuron(n, m, ins, name)
        if isinstance(m, nn.ReLU):
            raise UsageError(f"cannot export {n.target!r}: a ReLU (RepAct's analog head) has no NIR spiking form; "
                             "give --split-head to export the spiking body and save the head beside it")
        if isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or _pair(m.padding).any() or m.divisor_override:
                raise ConversionError(f"cannot export {n.target!r}: only average pools without padding, "
                                      "ceil_mode or divisor_override have a NIR node")
            return self._pool(name, ins, _pair(m.kernel_size), _pair(m.stride if m.stride is not None else
                                                                     m.kernel_size))
        if isinstance(m, nn.AdaptiveAvgPool2d):
            out = _pair(m.output_size)
            hw = np.array(shape_in[1:])
            if (hw % out).any():
                raise ConversionError(f"cannot export {n.target!r}: a {tuple(hw)} map does not divide into "
                                      f"{tuple(out)}")
            k = hw // out
            return ins if (k == 1).all() else self._pool(name, ins, k, k)
        if isinstance(m, nn.Flatten):
            return self._flatten(name, ins, shape_in, m.start_dim, m.end_dim)
        if isinstance(m, nn.Dropout | nn.Identity):
            return ins
        if isinstance(m, ChannelScale):
            return self._channel_scale(n, m, ins, name, shape_in)
        raise ConversionError(f"cannot export {n.target!r} ({type(m).__name__}): NIR has no node for it here")

    def _layer(self, n: torch.fx.Node, m: nn.Conv2d | nn.Linear, ins: list[_Term], name: str,
               shape_in: tuple[int, ...], modules) -> list[_Term]:
        """A conv (-> nir.Conv2d) or linear layer (-> nir.Affine), its BatchNorm folded in and its input's
        scale factor taken into the weights."""
        nir = self.nir
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise ConversionError(f"cannot export {n.target!r}: padding {m.padding!r} ({m.padding_mode})")
            weight, bias = self._folded(n, m, modules)
            f = self._uniform(ins, repr(n.target))
            if np.ndim(f) and m.groups != 1:
                raise ConversionError(f"cannot export {n.target!r}: per-channel amplitudes into a grouped conv")
            self.nodes[name] = nir.Conv2d(
                input_shape=tuple(int(s) for s in shape_in[1:]), weight=_scaled(weight, f, 1),
                stride=tuple(m.stride), padding=tuple(m.padding), dilation=tuple(m.dilation), groups=m.groups,
                bias=_np(bias))
        else:
            weight, bias = self._folded(n, m, modules)
            f = self._uniform(ins, repr(n.target))
            self.nodes[name] = nir.Affine(weight=_scaled(weight, f, 1), bias=_np(bias))
        self._connect(ins, name)
        return [_Term(name)]

    def _channel_scale(self, n: torch.fx.Node, m: ChannelScale, ins: list[_Term], name: str,
                       shape_in: tuple[int, ...]) -> list[_Term]:
        """A folded student's shortcut factor: a diagonal 1x1 conv (NIR's type inference reads a grouped conv's
        input channels from its weight alone, so not groups=C)."""
        f = np.broadcast_to(np.asarray(self._uniform(ins, repr(n.target)), dtype=np.float64), m.scale.shape)
        c = m.scale.numel()
        weight = np.diag(m.scale.double().cpu().numpy() * f).astype(np.float32).reshape(c, c, 1, 1)
        self.nodes[name] = self.nir.Conv2d(input_shape=tuple(int(s) for s in shape_in[1:]), weight=weight,
                                           stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                                           bias=np.zeros(c, dtype=np.float32))
        self._connect(ins, name)
        return [_Term(name)]

    def _folded(self, n: torch.fx.Node, m: nn.Module, modules) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's weight and bias with the BatchNorm that alone reads it folded in (refuses a BatchNorm
        that reads anything else)."""
        weight = m.weight.detach()
        bias = m.bias.detach() if m.bias is not None else torch.zeros(weight.shape[0])
        users = list(n.users)
        if len(users) == 1 and users[0].op == "call_module":
            bn = modules[users[0].target]
            if isinstance(bn, BatchNorm):
                if bn.training or bn.running_mean is None:
                    raise ConversionError(f"cannot fold {users[0].target!r}: no running statistics")
                return _fold_bn(weight, bias, bn)
        for u in users:
            if u.op == "call_module" and isinstance(modules[u.target], BatchNorm):
                raise ConversionError(f"cannot fold {u.target!r} into {n.target!r}: the layer has other readers")
        return weight, bias

    def _pool(self, name: str, ins: list[_Term], k: np.ndarray, stride: np.ndarray) -> list[_Term]:
        nir = self.nir
        f = self._uniform(ins, name)
        cls = nir.SumPool2d if self.sum_pool else nir.AvgPool2d
        self.nodes[name] = cls(kernel_size=k, stride=stride, padding=np.zeros(2, dtype=np.int64))
        self._connect(ins, name)
        return [_Term(name, f / float(k.prod()) if self.sum_pool else f)]  # per channel stays per channel

    def _flatten(self, name: str, ins: list[_Term], shape_in: tuple[int, ...], start: int, end: int) -> list[_Term]:
        # torch's dims count the batch; NIR's types do not
        start = start - 1 if start > 0 else start
        end = end - 1 if end > 0 else end
        if start != 0 or end not in (-1, len(shape_in) - 1):
            raise ConversionError(f"cannot export flatten {name!r}: only a flatten of each sample's every "
                                  "dimension has a NIR form here")
        if len(shape_in) == 1:
            return ins
        f = self._uniform(ins, name)
        if np.ndim(f):  # one factor per channel -> one per flattened feature
            f = np.repeat(f, int(np.prod(shape_in[1:])))
        self.nodes[name] = self.nir.Flatten(input_type={"input": np.array(shape_in)}, start_dim=0, end_dim=-1)
        self._connect(ins, name)
        return [_Term(name, f)]

    def _neuron(self, n: torch.fx.Node, m: SpikingNeuron, ins: list[_Term], name: str) -> list[_Term]:
        nir = self.nir
        spec, what = m.spec, repr(n.target)
        if spec.reset != "hard":
            raise UsageError(f"cannot export {what}: soft (subtract) reset has no NIR form (NIR neurons reset to "
                             "v_reset); export a student converted with --reset hard")
        if spec.v_init:
            raise UsageError(f"cannot export {what}: an initial membrane of {spec.v_init} x v_th has no NIR form; "
                             "export a student converted with --v-init 0")
        if m.scaling == "threshold":
            raise UsageError(f"cannot export {what}: its spikes carry the threshold as amplitude (a CQ "
                             "integrate-and-fire student), which NIR spikes cannot")
        shape = self.shape[n]
        theta = np.full(shape, float(spec.v_th), dtype=np.float64)
        amp = np.float64(1.0)
        if m.scaling == "channel":  # calibrated: a threshold per channel; spikes worth amp downstream
            theta = np.broadcast_to(_channels(m.v_th.double().numpy(), len(shape)), shape).copy()
            if not torch.equal(m.amp, torch.ones_like(m.amp)):
                amp = m.amp.double().numpy().copy()
        f = self._neuron_input(ins, what)
        theta = theta / _channels(f, len(shape))  # the NIR sum is the current divided by f
        decay = 1.0 if spec.kind == "if" else float(spec.decay)
        zeros = np.zeros(shape, dtype=np.float32)
        if decay == 1.0:
            node = nir.IF(r=np.full(shape, 1.0 / self.dt, dtype=np.float32), v_threshold=theta.astype(np.float32),
                          v_reset=zeros)
        else:
            tau = lif_tau(self.dt, decay)
            node = nir.LIF(tau=np.full(shape, tau, dtype=np.float32), r=np.ones(shape, dtype=np.float32),
                           v_leak=zeros, v_threshold=(theta * (1.0 - decay)).astype(np.float32),
                           v_reset=zeros.copy())
        self.nodes[name] = node
        self.neurons[name] = n.target
        self._connect(ins, name)
        return [_Term(name, amp)]
