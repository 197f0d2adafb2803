"""ANN-to-SNN conversion of a CQ/QCFS-trained ANN (Yan, Zhou, Wong, AAAI 2021; Bu et al., ICLR 2022).

BatchNorm is folded into the convolution before it, every bounded activation becomes an integrate-and-fire
neuron (no leak, reset by subtraction) whose threshold is the activation's clip (1 for CQ, lambda for
QCFS) and whose membrane starts at half the threshold, so that with a constant input it emits in T = Q
steps exactly the ANN's quantized activation. Optional: average pools followed by an IF neuron (spiking
pooling), n-bit fixed-point weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from enofctl.errors import ConversionError
from enofctl.models.acts import QCFS, ClampQuant
from enofctl.models.base import replace_module
from enofctl.spiking.neuron import NeuronSpec, SpikeFn, SpikingNeuron


class IFNeuron(SpikingNeuron):
    """Integrate-and-fire with a per-layer threshold (a buffer, saved in the artifact).

    ``[T*B, ...]`` in; out: ``spk * v_th`` (a spike carries the threshold it crossed, i.e. the clip of the
    ANN activation it replaces; with v_th = 1 the output is binary).
    """

    def __init__(self, spec: NeuronSpec, T: int = 1, v_th: float = 1.0):
        super().__init__(spec, T)
        self.register_buffer("v_th", torch.tensor(float(v_th)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_seq = x.unflatten(0, (self.T, -1))  # [T, B, ...]
        v_th = self.v_th.to(x.dtype)
        v = torch.full_like(x_seq[0], 0.0) + self.spec.v_init * v_th
        alpha = self.spec.surrogate_alpha()
        out = []
        for t in range(self.T):
            v = v + x_seq[t]
            spk = SpikeFn.apply((v - v_th) / v_th, self.spec.surrogate, alpha)
            v = v - spk * v_th  # reset by subtraction
            out.append(spk * v_th)
        return torch.stack(out).flatten(0, 1)  # [T*B, ...]

    def extra_repr(self) -> str:
        return f"T={self.T}, v_th={float(self.v_th):.4g}, v_init={self.spec.v_init}, sg={self.spec.surrogate}"


def fold_bn(model: nn.Module, input_size: tuple[int, ...]) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution into it (in place; BN becomes Identity).

    Pairs are found by tracing a forward pass: a BN is folded only if its input is exactly the output tensor
    of a conv (so shortcuts, pools or activations in between are never folded across).
    """
    outputs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    names = {m: n for n, m in model.named_modules()}

    def conv_hook(mod, inp, out):
        outputs[id(out)] = names[mod]

    def bn_hook(mod, inp, out):
        src = outputs.get(id(inp[0]))
        if src is not None:
            pairs.append((src, names[mod]))

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(bn_hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, *input_size))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        replace_module(model, conv_name, _folded(conv, bn))
        replace_module(model, bn_name, nn.Identity())
    return model


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv then bn in eval mode, as one conv: w' = w * g / s, b' = (b - mu) * g / s + beta."""
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        new.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return new



def quantize_weights(model: nn.Module, bits: int, normalize: bool = True) -> nn.Module:
    """n-bit fixed-point weights for every conv/linear, in place: ``round(w / 2^(1-n)) * 2^(1-n)``.

    With ``normalize`` each layer is first divided by its largest |w| and multiplied back afterwards (the
    same as normalizing the layer and scaling the next threshold, which IF dynamics make exact), so the
    grid covers the layer's range; without it the raw weights are rounded and clipped to [-1, 1 - step].
    """
    step = 2.0 ** (1 - bits)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                s = w.abs().max().clamp(min=1e-12) if normalize else torch.tensor(1.0)
                q = (torch.round(w / s / step) * step).clamp(-1.0, 1.0 - step)
                w.copy_(q * s)
    return model


def make_if_snn(ann: nn.Module, neuron: NeuronSpec, T: int, input_size: tuple[int, ...],
                spiking_pool: bool = False) -> nn.Module:
    """The IF body of a bounded-activation ANN (a copy): BN folded, activations -> IFNeuron, in place on
    ``ann``'s copy. Returns the body; wrap it in a SpikingNet."""
    import copy

    body = fold_bn(copy.deepcopy(ann), input_size)
    acts = [(n, m) for n, m in body.named_modules() if isinstance(m, (ClampQuant, QCFS, nn.ReLU, nn.ReLU6))]
    if not acts:
        raise ConversionError("the model has no activations to make spiking")
    for name, m in acts:
        if not isinstance(m, (ClampQuant, QCFS)):
            raise ConversionError(f"cannot convert {name!r} ({type(m).__name__}) with --method cq: train the "
                                  "teacher with --act cq (or qcfs/clamp) so every activation is bounded")
        v_th = float(m.clip.detach()) if isinstance(m, QCFS) else 1.0
        replace_module(body, name, IFNeuron(neuron, T, v_th))
    if spiking_pool:
        for name, m in list(body.named_modules()):
            if isinstance(m, nn.AvgPool2d):
                replace_module(body, name, nn.Sequential(m, IFNeuron(neuron, T, 1.0)))
    return body
