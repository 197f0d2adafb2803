"""Spiking neurons: a pure step ``(x, v) -> (spk, v')``, its multi-step loop, and a thin module over it.

Dynamics (the EnOF authors' code, with the reset and leak as options):

    u[t]   = decay * v[t-1] + x[t]          v[-1] = 0
    spk[t] = H(u[t] - v_th)                 surrogate gradient in the backward pass
    v[t]   = u[t] * (1 - spk[t])            hard reset   (or u[t] - spk[t] * v_th: soft reset)

``decay = 1`` with a soft reset is the integrate-and-fire neuron used by ANN-to-SNN conversion.
The module sees time folded into the batch (``[T*B, ...]``) like every stateless layer around it, unfolds
to ``[T, B, ...]``, loops over T and folds back. State lives only inside one forward call: there is
nothing to reset between batches.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

import torch
import torch.nn as nn

from enofctl.schema import NeuronSpec
from enofctl.spiking.packing import active_packer
from enofctl.surrogates import SURROGATES

# ----------------------------------------------------------------------------------------------------------
# the spike: Heaviside forward, a surrogate gradient (enofctl.surrogates) backward


class SpikeFn(torch.autograd.Function):
    """Heaviside forward, surrogate backward. Input is ``u - v_th``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.alpha = surrogate, alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        fn, _ = SURROGATES[ctx.surrogate]
        return grad * fn(x, ctx.alpha), None, None


Threshold = float | torch.Tensor  # one value, or a tensor that broadcasts over a step's [B, ...] (per channel)


def neuron_step(x: torch.Tensor, v: torch.Tensor, spec: NeuronSpec,
                v_th: Threshold | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step: input current ``x`` and membrane ``v`` ([B, ...]) -> (spikes, next membrane).

    ``v_th`` overrides the spec's threshold (a layer's own, possibly per channel). Such a neuron is the spec's
    neuron on the input scaled by ``s = spec.v_th / v_th``, and its surrogate gradient is that neuron's:
    ``s * sg(s * (u - v_th))`` (the same spikes; a gradient that does not grow with the layer's scale)."""
    decay = 1.0 if spec.kind == "if" else spec.decay
    u = decay * v + x
    if v_th is None:
        v_th, z = spec.v_th, u - spec.v_th
    else:
        z = (u - v_th) * (spec.v_th / v_th)
    spk = SpikeFn.apply(z, spec.surrogate, spec.surrogate_alpha())
    v_next = u * (1.0 - spk) if spec.reset == "hard" else u - spk * v_th
    return spk, v_next


def neuron_multistep(x_seq: torch.Tensor, spec: NeuronSpec, v0: torch.Tensor | None = None,
                     v_th: Threshold | None = None) -> torch.Tensor:
    """A whole sequence: ``x_seq`` [T, B, ...] -> spikes [T, B, ...]."""
    th = spec.v_th if v_th is None else v_th
    v = torch.zeros_like(x_seq[0]) + spec.v_init * th if v0 is None else v0
    out = []
    for t in range(x_seq.shape[0]):
        spk, v = neuron_step(x_seq[t], v, spec, v_th)
        out.append(spk)
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------------------
# the same dynamics as one autograd node over the whole sequence (what SpikingNeuron runs)


def _rows_contiguous(x: torch.Tensor) -> bool:
    """Dense, starting at its storage's first element, each row one block (contiguous or channels-last)."""
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    return dense and x.storage_offset() == 0


def _alloc_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """An empty tensor like ``x`` with ``rows`` rows, in x's memory format (channels-last stays so)."""
    fmt = torch.contiguous_format
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        fmt = torch.channels_last
    return torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)


def per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One value per channel ``[C]`` shaped (and typed) to broadcast over one step's rows ``like`` [B, C, ...]."""
    return values.view(-1, *([1] * (like.dim() - 2))).to(like.dtype)


def _full_row(x: torch.Tensor, value: Threshold) -> torch.Tensor | float:
    """``value`` as something that fills one step's rows of ``x`` (a float stays a float)."""
    return value if not isinstance(value, torch.Tensor) else value.to(x.dtype).expand(x.shape[1:])


def _surrogate_(z: torch.Tensor, name: str, a: float, scratch: torch.Tensor) -> torch.Tensor:
    """The surrogate derivative at ``z = u - v_th``, computed in place in ``z`` where the formula allows
    (the same operations as SURROGATES, so the same rounding); ``scratch`` is a bool buffer like ``z``."""
    if name == "triangle":  # (a - |z|)+ / a^2
        torch.add(z.new_tensor(a), z.abs_(), alpha=-1, out=z).clamp_(min=0)
        return z if a * a == 1 else z.div_(a * a)
    if name == "rect":  # (|z| < a/2) / a
        torch.lt(z.abs_(), a / 2, out=scratch)
        return z.copy_(scratch).div_(a)
    fn, _ = SURROGATES[name]
    return z.copy_(fn(z, a))


class _NeuronSequence(torch.autograd.Function):
    """``neuron_multistep`` in one node. It keeps only the membrane before firing, ``u`` (one tensor the
    size of the input); the spikes and surrogate derivatives are recomputed from it in backward, where the
    per-step loop keeps about four tensors per step. Each step writes into a few buffers allocated once per
    call (not per step), which keeps the allocator from fragmenting, and takes as few passes over memory as
    eager PyTorch allows (4 forward, 8 backward, against the loop's ~8 and ~16). Spikes are those of the
    loop, bit for bit; gradients equal its up to rounding (fused multiply-adds, another summation order).

    ``x``: ``[T*B, ...]``, or ``[B, ...]`` with ``repeat`` (the same input at every step, e.g. the first
    layer's output under direct encoding: computed once, its gradient summed over the steps). With
    ``inplace`` (the contract of ``nn.ReLU(inplace=True)``: nothing else reads ``x`` afterwards) the
    membrane is written over ``x`` instead of a new tensor, as the ANN's ReLU writes over its input.
    """

    @staticmethod
    def forward(ctx, x, T: int, repeat: bool, inplace: bool, decay: float, v_th: float, hard: bool,
                v_init: float, surrogate: str, alpha: float, sg_scale=None):
        B = x.shape[0] if repeat else x.shape[0] // T
        per_channel = isinstance(v_th, torch.Tensor)
        keep = ctx.needs_input_grad[0]
        over_x = keep and inplace and not repeat and x.grad_fn is not None and _rows_contiguous(x)
        spk = _alloc_rows(x, T * B)  # [T*B, ...]
        u_all = (x if over_x else _alloc_rows(x, T * B)) if keep else None
        u_buf = None if keep else _alloc_rows(x, B)
        v = _alloc_rows(x, B).copy_(_full_row(x, v_init * v_th)) if v_init else None  # [B, ...], every step
        for t in range(T):
            rows = slice(t * B, (t + 1) * B)
            x_t = x if repeat else x[rows]
            u = u_all[rows] if keep else u_buf
            if v is None:  # decay * 0 + x
                u = u.copy_(x_t) if keep and not over_x else x_t
                v = torch.empty_like(x_t)
            elif over_x:  # x + decay * v: the same rounding as decay * v + x
                u.add_(torch.mul(v, decay, out=spk[rows]))  # (this step's spikes are not written yet)
            else:
                torch.mul(v, decay, out=u).add_(x_t)  # decay * v + x, rounded as the loop rounds it
            spk_t = torch.gt(u, v_th, out=spk[rows])
            if t == T - 1:
                break  # no next step needs the membrane
            if hard:  # u * (1 - spk) = u - u * spk, exact for spk in {0, 1}
                torch.addcmul(u, u, spk_t, value=-1, out=v)
            elif per_channel:  # u - spk * v_th
                torch.addcmul(u, spk_t, v_th, value=-1, out=v)
            else:
                torch.sub(u, spk_t, alpha=v_th, out=v)
        if keep:
            ctx.save_for_backward(u_all)
        ctx.config = (T, B, repeat, decay, v_th, hard, surrogate, alpha, sg_scale)
        return spk

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spk):
        (u_all,) = ctx.saved_tensors
        T, B, repeat, decay, v_th, hard, surrogate, alpha, sg_scale = ctx.config
        grad_x = _alloc_rows(u_all, B if repeat else T * B)
        sg, keep_v = _alloc_rows(u_all, B), _alloc_rows(u_all, B)
        mask = torch.empty_like(sg, dtype=torch.bool) if surrogate == "rect" else None
        bufs = (_alloc_rows(u_all, B), _alloc_rows(u_all, B)) if repeat else None
        prev = None  # dL/du[t+1]; dL/dv[t] = decay * prev since u[t+1] = decay * v[t] + x[t+1]
        for t in reversed(range(T)):
            rows = slice(t * B, (t + 1) * B)
            u, g = u_all[rows], grad_spk[rows]
            out = bufs[t % 2] if repeat else grad_x[rows]
            if sg_scale is None:
                _surrogate_(torch.sub(u, v_th, out=sg), surrogate, alpha, mask)  # d spk / d u
            else:  # a layer's own threshold: the spec's neuron on the input scaled by s (see neuron_step)
                _surrogate_(torch.sub(u, v_th, out=sg).mul_(sg_scale), surrogate, alpha, mask).mul_(sg_scale)
            if prev is None:
                torch.mul(g, sg, out=out)
            elif hard:  # v = u * (1 - spk): dv/du = (1 - spk) - u * sg
                torch.addcmul(g, prev, u, value=-decay, out=out).mul_(sg)
                out.addcmul_(prev, torch.le(u, v_th, out=keep_v), value=decay)
            elif isinstance(v_th, torch.Tensor):  # v = u - spk * v_th: dv/du = 1 - v_th * sg
                torch.addcmul(g, prev, v_th, value=-decay, out=out).mul_(sg).add_(prev, alpha=decay)
            else:
                torch.add(g, prev, alpha=-decay * v_th, out=out).mul_(sg).add_(prev, alpha=decay)
            if repeat:
                grad_x.copy_(out) if prev is None else grad_x.add_(out)
            prev = out
        return grad_x, None, None, None, None, None, None, None, None, None, None


_HAS_TRITON = importlib.util.find_spec("triton") is not None


def _triton_sequence(x: torch.Tensor, v_th: Threshold, surrogate: str):
    """The Triton kernel's autograd node when it runs this call (CUDA; float32, bf16 or fp16; one threshold
    per layer or per channel; see ``triton_neuron``), else None. Triton is imported only on this path."""
    if not _HAS_TRITON or not (x.is_cuda or os.environ.get("ENOFCTL_TRITON_NEURON") == "1"):
        return None
    from enofctl.spiking import triton_neuron
    return triton_neuron.TritonNeuronSequence if triton_neuron.supports(x, v_th, surrogate) else None


def neuron_sequence(x: torch.Tensor, spec: NeuronSpec, T: int, repeat: bool = False,
                    inplace: bool = False, v_th: Threshold | None = None) -> torch.Tensor:
    """Time-folded spikes ``[T*B, ...]`` of ``x`` (``[T*B, ...]``, or ``[B, ...]`` repeated at every step
    with ``repeat``), the same dynamics as ``neuron_multistep`` in one autograd node that saves only ``u``.
    With ``inplace``, a non-leaf ``x`` may be overwritten by the membrane (see ``_NeuronSequence``).
    ``v_th``: the layer's own threshold instead of the spec's (a tensor broadcasting over one step's rows).
    The PyTorch path computes in x's dtype (a tensor ``v_th`` cast to it); the Triton kernel in float32 (a
    tensor ``v_th`` kept in float32) whatever x's dtype, see ``triton_neuron``."""
    if not repeat and x.shape[0] % T:
        raise ValueError(f"{x.shape[0]} rows are not T={T} steps of one batch")
    decay = 1.0 if spec.kind == "if" else spec.decay
    kernel = _triton_sequence(x, spec.v_th if v_th is None else v_th, spec.surrogate)
    dtype = torch.float32 if kernel else x.dtype  # the kernel computes in float32 whatever x's dtype
    th = spec.v_th if v_th is None else v_th.to(dtype) if isinstance(v_th, torch.Tensor) else v_th
    scale = None if v_th is None else spec.v_th / th  # see neuron_step
    fn = kernel or _NeuronSequence
    return fn.apply(x, T, repeat, inplace, decay, th, spec.reset == "hard", spec.v_init,
                    spec.surrogate, spec.surrogate_alpha(), scale)


# How a layer's neurons depart from the spec (``SpikingSpec.scaling``):
#   "none"      every neuron fires at the spec's v_th and a spike is 1 (the EnOF student);
#   "threshold" each layer has its own threshold (a 0-d buffer ``v_th``) and a spike carries it, i.e. it is
#               worth ``v_th`` downstream (integrate-and-fire conversion: the threshold is the ANN's clip);
#   "channel"   each channel has its own threshold and output amplitude (buffers ``v_th`` and ``amp``, one
#               value per channel), set by calibrating a converted student against its teacher.
Scaling = Literal["none", "threshold", "channel"]


class SpikingNeuron(nn.Module):
    """Multi-step neuron in a time-folded network: ``[T*B, ...]`` in, spikes ``[T*B, ...]`` out (each spike
    times the layer's amplitude under a ``scaling``; see above).

    With ``repeat_input`` set (by SpikingNet, for the first neuron under direct encoding) the input is
    ``[B, ...]``, the same current at every step. ``inplace`` is the ANN activation's promise that nothing
    else reads the input (``nn.ReLU(inplace=True)``): the membrane then reuses its memory. Spikes are
    announced to an active ``SpikePacker`` so that autograd keeps them as bits. ``channels`` (dimension 1 of
    the input) sizes the per-channel buffers of ``scaling="channel"``.
    """

    def __init__(self, spec: NeuronSpec, T: int = 1, inplace: bool = False, scaling: Scaling = "none",
                 channels: int = 1):
        super().__init__()
        self.spec, self.T, self.inplace, self.scaling = spec, T, inplace, scaling
        self.repeat_input = False
        if scaling == "threshold":
            self.register_buffer("v_th", torch.tensor(float(spec.v_th)))
        elif scaling == "channel":
            self.register_buffer("v_th", torch.full((channels,), float(spec.v_th)))
            self.register_buffer("amp", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scaling == "none":
            spk = neuron_sequence(x, self.spec, self.T, self.repeat_input, self.inplace)  # [T*B, ...]
        else:
            v_th = float(self.v_th) if self.scaling == "threshold" else \
                self.v_th.view(-1, *([1] * (x.dim() - 2)))  # in its own dtype: neuron_sequence casts it
            spk = neuron_sequence(x, self.spec, self.T, self.repeat_input, self.inplace, v_th)
        packer = active_packer()
        if packer is not None:
            packer.mark(spk)
        if self.scaling == "threshold":
            return spk * self.v_th.to(spk.dtype)
        if self.scaling == "channel":
            return spk * per_channel(self.amp, spk)
        return spk

    def extra_repr(self) -> str:
        s = self.spec
        th = f"{float(self.v_th):.4g}" if self.scaling == "threshold" else "per channel" \
            if self.scaling == "channel" else s.v_th
        return f"T={self.T}, kind={s.kind}, decay={s.decay}, v_th={th}, reset={s.reset}, sg={s.surrogate}"
