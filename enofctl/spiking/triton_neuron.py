"""The multi-step neuron as one Triton kernel per direction: each program takes a block of neurons and runs
the whole time loop of one layer in registers (forward over t, backward over t in reverse), where the
PyTorch path (``neuron._NeuronSequence``) launches a handful of kernels per step.

The same dynamics and the same saved state as the PyTorch path: forward keeps only the membrane before
firing ``u`` [T*B, ...]; backward recomputes the spikes and surrogate derivatives from it. Spikes are those
of ``neuron_step`` bit for bit (no fused multiply-add in forward: ``decay * v + x`` rounds twice, as the
loop rounds it); gradients equal its up to rounding.

Thresholds: one per layer (a float), or one per channel (``scaling="channel"``: a tensor ``[C, 1, ...]``
broadcasting over one step's rows ``[B, C, ...]``). Per channel, element ``j`` of a step's rows reads
threshold ``(j // inner) % C`` (``inner`` = the elements of one channel's plane in a contiguous row; 1 for a
channels-last 4-D input, whose channels are innermost), and its surrogate gradient is ``neuron_step``'s
``s * sg(s * (u - v_th))`` with ``s = spec.v_th / v_th`` per channel, computed once by PyTorch (as the
PyTorch path computes it). The thresholds get no gradient, on either path (they are buffers, set by
calibration); ``amp`` multiplies the spikes outside (``SpikingNeuron.forward``).

Dtypes: float32, bfloat16 and float16 (what autocast gives). The input is loaded in its dtype and upcast
(exact); the membrane, thresholds and surrogates are float32 throughout, and ``u`` is saved in float32
(twice the bytes of a bf16 ``u``: backward recomputes the forward's spikes exactly, not from a rounded
membrane). Spikes and the input's gradient come back in the input's dtype. So on a bf16/fp16 input the
kernel computes what the float32 path computes on the upcast input with float32 thresholds: the same
spikes, and that path's gradient rounded once to the dtype. It does *not* reproduce the PyTorch path run
in bf16, which rounds the membrane to bf16 at every step (its spikes can differ where ``u`` lies within a
bf16 rounding of the threshold). Tested in Triton's interpreter for both dtypes (on the CPU the
interpreter truncates float32 to bf16 where a GPU rounds to nearest; one unit in the last place).

Chosen by ``neuron.neuron_sequence`` for CUDA tensors in those dtypes when Triton imports; this module (and
Triton) is imported only then. What the kernel does not cover runs the PyTorch path: other dtypes (float64),
thresholds that are not one per layer or one per channel, tensors whose rows are not dense.
``ENOFCTL_TRITON_NEURON`` overrides the choice: ``0`` never, ``1`` also on CPU tensors under Triton's
interpreter (``TRITON_INTERPRET=1``, what the tests use; without it a warning, once, and the PyTorch path),
unset or ``auto``: CUDA tensors only.
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
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # loaded as they are, computed in float32
_warned = False


def _dense(x: torch.Tensor) -> bool:
    """Rows of ``x`` laid out as one flat block (contiguous or channels-last) from the storage's start."""
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    return dense and x.storage_offset() == 0


def channel_layout(x: torch.Tensor, v_th) -> tuple[int, int] | None:
    """``(C, inner)``: the element at flat index ``j`` of one step's rows takes threshold ``(j // inner) % C``
    (a float: ``(1, 1)``); None when ``v_th`` is not one value per channel (dimension 1 of ``x``) or a single
    value. A channels-last 4-D ``x`` keeps its channels innermost: ``inner = 1``."""
    if not isinstance(v_th, torch.Tensor) or v_th.numel() == 1:
        return (1, 1)
    d = x.dim() - 1  # dimensions of one row
    if x.dim() < 2 or v_th.dim() > d:
        return None
    shape = (1,) * (d - v_th.dim()) + tuple(v_th.shape)
    if shape[0] != x.shape[1] or any(n != 1 for n in shape[1:]):
        return None
    return (x.shape[1], x[0, 0].numel() if x.is_contiguous() else 1)


def _warn_once(message: str) -> None:
    """A warning the first time the kernel was asked for and cannot run (stacklevel: the caller's caller)."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, stacklevel=4)


def supports(x: torch.Tensor, v_th, surrogate: str) -> bool:
    """Whether the kernel runs this call (see the module doc); False sends it to the PyTorch path."""
    mode = os.environ.get("ENOFCTL_TRITON_NEURON", "auto")
    if mode == "0":
        return False
    if not available:
        if mode == "1":
            _warn_once("ENOFCTL_TRITON_NEURON=1 but Triton does not import here; the neuron runs its PyTorch path")
        return False
    if not x.is_cuda:
        if mode != "1":
            return False
        if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
            _warn_once("ENOFCTL_TRITON_NEURON=1 on CPU tensors needs TRITON_INTERPRET=1; "
                       "the neuron runs its PyTorch path")
            return False
    if isinstance(v_th, torch.Tensor) and v_th.device != x.device:
        return False
    return (x.dtype in _DTYPES and surrogate in _SURROGATE_IDS and _dense(x) and x.numel() > 0
            and channel_layout(x, v_th) is not None)


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
    def _forward_kernel(x_ptr, spk_ptr, u_ptr, vth_ptr, N, T, decay, v_th, v_init, v_start, C, INNER,
                        HARD: tl.constexpr, REPEAT: tl.constexpr, KEEP: tl.constexpr, CHANNEL: tl.constexpr,
                        BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        if CHANNEL:  # each element's channel's threshold (float32), fixed over the time loop
            v_th = tl.load(vth_ptr + (offs // INNER) % C, mask=mask, other=1.0)
            v = tl.zeros([BLOCK], dtype=tl.float32) + v_init * v_th
        else:
            v = tl.zeros([BLOCK], dtype=tl.float32) + v_start
        xp, sp, up = x_ptr + offs, spk_ptr + offs, u_ptr + offs  # step t's rows: pointers walked by N (64-bit)
        if REPEAT:
            x_rep = tl.load(xp, mask=mask, other=0.0).to(tl.float32)
        for _ in range(T):
            if REPEAT:
                x = x_rep
            else:
                x = tl.load(xp, mask=mask, other=0.0).to(tl.float32)  # bf16/fp16 upcast exactly
                xp += N
            u = decay * v + x  # v starts at v_init * v_th (decay * 0 + x = x)
            fire = u > v_th
            spk = tl.where(fire, 1.0, 0.0)
            tl.store(sp, spk.to(spk_ptr.dtype.element_ty), mask=mask)  # 0 and 1: exact in every dtype
            sp += N
            if KEEP:
                tl.store(up, u, mask=mask)
                up += N
            if HARD:
                v = u * (1.0 - spk)
            else:
                v = u - spk * v_th

    @triton.jit
    def _backward_kernel(g_ptr, u_ptr, gx_ptr, vth_ptr, scale_ptr, N, T, decay, v_th, alpha, sg_scale, C, INNER,
                         HARD: tl.constexpr, REPEAT: tl.constexpr, SCALED: tl.constexpr, SG: tl.constexpr,
                         CHANNEL: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        if CHANNEL:  # per channel: the threshold and the surrogate's scale s = spec v_th / v_th (float32)
            ch = (offs // INNER) % C
            v_th = tl.load(vth_ptr + ch, mask=mask, other=1.0)
            sg_scale = tl.load(scale_ptr + ch, mask=mask, other=1.0)
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
            g = tl.load(gp, mask=mask, other=0.0).to(tl.float32)
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
                tl.store(gxp, gu.to(gx_ptr.dtype.element_ty), mask=mask)
                gxp -= N
            prev = gu
        if REPEAT:
            tl.store(gx_ptr + offs, acc.to(gx_ptr.dtype.element_ty), mask=mask)


def _alloc(x: torch.Tensor, rows: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    fmt = torch.contiguous_format
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        fmt = torch.channels_last
    return torch.empty((rows, *x.shape[1:]), dtype=dtype or x.dtype, device=x.device, memory_format=fmt)


def _vector(value, x: torch.Tensor) -> torch.Tensor:
    """A per-channel tensor as a float32 vector [C] for the kernels (a float: a placeholder, never read)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device=x.device, dtype=torch.float32).reshape(-1).contiguous()
    return x.new_empty(1, dtype=torch.float32)


class TritonNeuronSequence(torch.autograd.Function):
    """``neuron._NeuronSequence`` on the Triton kernels: the same arguments, the same outputs. ``inplace`` is
    accepted and ignored (the kernel writes ``u`` to its own buffer). ``v_th`` (and ``sg_scale``) a float or
    one value per channel (see ``channel_layout``); those tensors get no gradient, as on the PyTorch path.
    Spikes and the input's gradient come in ``x``'s dtype; the membrane is computed and saved in float32."""

    @staticmethod
    def forward(ctx, x, T: int, repeat: bool, inplace: bool, decay: float, v_th, hard: bool,
                v_init: float, surrogate: str, alpha: float, sg_scale=None):
        B = x.shape[0] if repeat else x.shape[0] // T
        N = x[:B].numel() if B else 0  # neurons of one step
        C, inner = channel_layout(x, v_th)
        channel = isinstance(v_th, torch.Tensor)
        vth_vec = _vector(v_th, x)  # [C] float32
        keep = ctx.needs_input_grad[0]
        spk = _alloc(x, T * B)
        u_all = _alloc(x, T * B, torch.float32) if keep else spk  # (unused when not kept)
        th = 1.0 if channel else float(v_th)
        grid = (triton.cdiv(N, _BLOCK),)
        _forward_kernel[grid](x, spk, u_all, vth_vec, N, T, float(decay), th, float(v_init),
                              0.0 if channel else float(v_init * v_th), C, inner,
                              HARD=hard, REPEAT=repeat, KEEP=keep, CHANNEL=channel, BLOCK=_BLOCK,
                              enable_fp_fusion=False)
        if keep:
            ctx.save_for_backward(u_all, vth_vec, _vector(sg_scale, x))
        ctx.config = (T, B, N, C, inner, repeat, decay, th, channel, hard, surrogate, alpha, sg_scale, x.dtype)
        return spk

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spk):
        u_all, vth_vec, scale_vec = ctx.saved_tensors
        T, B, N, C, inner, repeat, decay, th, channel, hard, surrogate, alpha, sg_scale, dtype = ctx.config
        g = grad_spk if grad_spk.stride() == u_all.stride() else _alloc(u_all, T * B, grad_spk.dtype).copy_(grad_spk)
        grad_x = _alloc(u_all, B if repeat else T * B, dtype)
        scale = 1.0 if channel or sg_scale is None else float(sg_scale)
        grid = (triton.cdiv(N, _BLOCK),)
        _backward_kernel[grid](g, u_all, grad_x, vth_vec, scale_vec, N, T, float(decay), th, float(alpha), scale,
                               C, inner, HARD=hard, REPEAT=repeat, SCALED=sg_scale is not None,
                               SG=_SURROGATE_IDS[surrogate], CHANNEL=channel, BLOCK=_BLOCK)
        return grad_x, None, None, None, None, None, None, None, None, None, None
