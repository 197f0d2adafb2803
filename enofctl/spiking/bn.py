"""BatchNorm arithmetic shared by the conversions and the export: folding an eval-mode BatchNorm into the
conv or linear layer before it, and rescaling one's input and output per channel."""

from __future__ import annotations

import torch
import torch.nn as nn

BatchNorm = nn.modules.batchnorm._BatchNorm


@torch.no_grad()
def fold_bn_weights(weight: torch.Tensor, bias: torch.Tensor | None, bn: BatchNorm,
            dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` / ``bias`` (None: zeros) of a layer followed by ``bn`` in eval mode, as one layer's:
    ``w * g / sqrt(var + eps)`` per output channel and ``(b - mean) * g / sqrt(var + eps) + beta`` (``g = 1``,
    ``beta = 0`` without affine parameters). Computed and returned in ``dtype`` (default: ``weight``'s)."""
    dtype = weight.dtype if dtype is None else dtype
    w, shape = weight.to(dtype), (-1,) + (1,) * (weight.dim() - 1)
    std = torch.sqrt(bn.running_var.to(dtype) + bn.eps)
    scale = bn.weight.to(dtype) / std if bn.affine else 1.0 / std
    b = torch.zeros(weight.shape[0], dtype=dtype, device=weight.device) if bias is None else bias.to(dtype)
    shift = bn.bias.to(dtype) if bn.affine else 0.0
    return w * scale.view(shape), (b - bn.running_mean.to(dtype)) * scale + shift


@torch.no_grad()
def rescale_bn(bn: BatchNorm, s_in: torch.Tensor, r: torch.Tensor) -> None:
    """``bn`` (in place) reads its input at the per-channel scale ``s_in`` and writes its output at ``r``
    (both ``[C]``, in the statistics' dtype): mean / s_in, var + eps -> (var + eps) / s_in^2, weight and bias
    / r. A BatchNorm without affine parameters can only take ``r = 1``: ValueError otherwise, nothing changed."""
    if not bn.affine and not torch.all(r == 1):
        raise ValueError("a BatchNorm without affine parameters cannot take a channel scale")
    if not torch.all(s_in == 1):
        bn.running_mean.div_(s_in)
        bn.running_var.add_(bn.eps).div_(s_in * s_in).sub_(bn.eps)
    if bn.affine:
        bn.weight.data.div_(r)
        bn.bias.data.div_(r)
