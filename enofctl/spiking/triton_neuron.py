"""The multi-step neuron as one Triton kernel per direction: each program takes a block of neurons and runs
the whole time loop of one layer in registers (forward over t, backward over t in reverse), where the
PyTorch path (``neuron._NeuronSequence``) launches a handful of kernels per step.

The same dynamics and the same saved state as the PyTorch path: forward keeps only the membrane before
firing ``u`` [T*B, ...]; backward recomputes the spikes and surrogate derivatives from it. Spikes are those
of ``neuron_step`` bit for bit (no fused multiply-add in forward: ``decay * v + x`` rounds twice, as the
loop rounds it); gradients equal its up to rounding.

Chosen by ``neuron.neuron_sequence`` for float32 CUDA tensors when Triton imports; this module (and Triton)
is imported only then. What the kernel does not cover runs the PyTorch path: per-channel thresholds
(``scaling="channel"``), other dtypes, tensors whose rows are not dense. ``ENOFCTL_TRITON_NEURON`` overrides
the choice: ``0`` never, ``1`` also on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, what
the tests use; without it a warning, once, and the PyTorch path), unset or ``auto``: CUDA tensors only.
"""

from __future__ import annotations

import os
import warnings

import torch

try:
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - any failure to import means: no kernel
    triton = None

available = triton is not None

_SURROGATE_IDS = {"rect": 0, "triangle": 1, "sigmoid": 2, "atan": 3, "tanh": 4}
_BLOCK = 256
_warned = False


def _dense(x: torch.Tensor) -> bool:
    """Rows of ``x`` laid out as one flat block (contiguous or channels-last) from the storage's start."""
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    return dense and x.storage_offset() == 0


def supports(x: torch.Tensor, v_th, surrogate: str) -> bool:
    """Whether the kernel runs this call (see the module doc); False sends it to the PyTorch path."""
    global _warned
    mode = os.environ.get("ENOFCTL_TRITON_NEURON", "auto")
    if not available or mode == "0":
        return False
    if not x.is_cuda:
        if mode != "1":
            return False
        if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
            if not _warned:
                _warned = True
                warnings.warn("ENOFCTL_TRITON_NEURON=1 on CPU tensors needs TRITON_INTERPRET=1; "
                              "the neuron runs its PyTorch path", stacklevel=3)
            return False
    return (x.dtype == torch.float32 and not isinstance(v_th, torch.Tensor) and surrogate in _SURROGATE_IDS
            and _dense(x) and x.numel() > 0)


if available:

    @triton.jit
    def _surrogate(z, alpha, SG: tl.constexpr):
        """d spk / d z at z = u - v_th: the formulas of enofctl.surrogates."""
        if SG == 0:  # rect
            d = tl.where(tl.abs(z) < alpha / 2, 1.0, 0.0) / alpha
        elif SG == 1:  # triangle
            d = tl.maximum(alpha - tl.abs(z), 0.0) / (alpha * alpha)
        elif SG == 2:  # sigmoid
            s = tl.sigmoid(alpha * z)
            d = alpha * s * (1 - s)
        elif SG == 3:  # atan
            w = 1.5707963267948966 * alpha * z
            d = (alpha / 2) / (1 + w * w)
        else:  # tanh, as 2 * sigmoid(2y) - 1
            th = 2 * tl.sigmoid(2 * alpha * z) - 1
            d = (alpha / 2) * (1 - th * th)
        return d

    @triton.jit
    def _forward_kernel(x_ptr, spk_ptr, u_ptr, N, T, decay, v_th, v_start,
                        HARD: tl.constexpr, REPEAT: tl.constexpr, KEEP: tl.constexpr,
                        BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        v = tl.zeros([BLOCK], dtype=tl.float32) + v_start
        xp, sp, up = x_ptr + offs, spk_ptr + offs, u_ptr + offs  # step t's rows: pointers walked by N (64-bit)
        if REPEAT:
            x_rep = tl.load(xp, mask=mask, other=0.0)
        for _ in range(T):
            if REPEAT:
                x = x_rep
            else:
                x = tl.load(xp, mask=mask, other=0.0)
                xp += N
            u = decay * v + x  # v starts at v_init * v_th (decay * 0 + x = x)
            fire = u > v_th
            spk = tl.where(fire, 1.0, 0.0)
            tl.store(sp, spk, mask=mask)
            sp += N
            if KEEP:
                tl.store(up, u, mask=mask)
                up += N
            if HARD:
                v = u * (1.0 - spk)
            else:
                v = u - spk * v_th

    @triton.jit
    def _backward_kernel(g_ptr, u_ptr, gx_ptr, N, T, decay, v_th, alpha, sg_scale,
                         HARD: tl.constexpr, REPEAT: tl.constexpr, SCALED: tl.constexpr, SG: tl.constexpr,
                         BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        prev = tl.zeros([BLOCK], dtype=tl.float32)  # dL/du[t+1]; dL/dv[t] = decay * prev
        acc = tl.zeros([BLOCK], dtype=tl.float32)  # the repeated input's gradient, summed over t
        gp, up, gxp = g_ptr + offs, u_ptr + offs, gx_ptr + offs
        for _ in range(T - 1):  # to the last step's rows (pointers, not t * N: no 32-bit overflow)
            gp += N
            up += N
            if not REPEAT:
                gxp += N
        for _ in range(T):  # t = T-1, ..., 0
            u = tl.load(up, mask=mask, other=0.0)
            g = tl.load(gp, mask=mask, other=0.0)
            up -= N
            gp -= N
            if SCALED:  # a layer's own threshold: s * sg(s * (u - v_th)), see neuron.neuron_step
                sg = _surrogate((u - v_th) * sg_scale, alpha, SG) * sg_scale
            else:
                sg = _surrogate(u - v_th, alpha, SG)
            dv = decay * prev  # dL/dv[t], zero at the last step
            if HARD:  # v = u * (1 - spk): dv/du = (1 - spk) - u * sg
                keep = tl.where(u > v_th, 0.0, 1.0)
                gu = (g - dv * u) * sg + dv * keep
            else:  # v = u - spk * v_th: dv/du = 1 - v_th * sg
                gu = (g - dv * v_th) * sg + dv
            if REPEAT:
                acc += gu
            else:
                tl.store(gxp, gu, mask=mask)
                gxp -= N
            prev = gu
        if REPEAT:
            tl.store(gx_ptr + offs, acc, mask=mask)


def _alloc(x: torch.Tensor, rows: int) -> torch.Tensor:
    fmt = torch.contiguous_format
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        fmt = torch.channels_last
    return torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)


class TritonNeuronSequence(torch.autograd.Function):
    """``neuron._NeuronSequence`` on the Triton kernels: the same arguments, the same outputs. ``inplace`` is
    accepted and ignored (the kernel writes ``u`` to its own buffer). ``v_th`` must be a float."""

    @staticmethod
    def forward(ctx, x, T: int, repeat: bool, inplace: bool, decay: float, v_th: float, hard: bool,
                v_init: float, surrogate: str, alpha: float, sg_scale=None):
        B = x.shape[0] if repeat else x.shape[0] // T
        N = x[:B].numel() if B else 0  # neurons of one step
        keep = ctx.needs_input_grad[0]
        spk = _alloc(x, T * B)
        u_all = _alloc(x, T * B) if keep else spk  # (unused when not kept)
        grid = (triton.cdiv(N, _BLOCK),)
        _forward_kernel[grid](x, spk, u_all, N, T, float(decay), float(v_th), float(v_init * v_th),
                              HARD=hard, REPEAT=repeat, KEEP=keep, BLOCK=_BLOCK,
                              enable_fp_fusion=False)
        if keep:
            ctx.save_for_backward(u_all)
        ctx.config = (T, B, N, repeat, decay, v_th, hard, surrogate, alpha, sg_scale)
        return spk

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spk):
        (u_all,) = ctx.saved_tensors
        T, B, N, repeat, decay, v_th, hard, surrogate, alpha, sg_scale = ctx.config
        g = grad_spk if grad_spk.stride() == u_all.stride() else _alloc(u_all, T * B).copy_(grad_spk)
        grad_x = _alloc(u_all, B if repeat else T * B)
        grid = (triton.cdiv(N, _BLOCK),)
        _backward_kernel[grid](g, u_all, grad_x, N, T, float(decay), float(v_th), float(alpha),
                               float(sg_scale if sg_scale is not None else 1.0),
                               HARD=hard, REPEAT=repeat, SCALED=sg_scale is not None,
                               SG=_SURROGATE_IDS[surrogate], BLOCK=_BLOCK)
        return grad_x, None, None, None, None, None, None, None, None, None, None
