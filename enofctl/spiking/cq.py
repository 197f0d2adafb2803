"""ANN-to-SNN conversion of a CQ/QCFS-trained ANN (Yan, Zhou, Wong, AAAI 2021; Bu et al., ICLR 2022).

BatchNorm is folded into the convolution before it, every bounded activation becomes an integrate-and-fire
neuron (no leak, reset by subtraction) whose threshold is the activation's clip (1 for CQ, lambda for
QCFS) and whose membrane starts at half the threshold, so that with a constant input it emits in T = Q
steps exactly the ANN's quantized activation. Optional: average pools followed by an IF neuron (spiking
pooling), n-bit fixed-point weights.

Data-driven steps after conversion (optional, on a few batches of training data):

- ``normalize_thresholds``: data-based normalization (Rueckauer et al., 2017) for activations that are not
  clamped (ReLU): the neuron's threshold becomes a high percentile of the ANN's positive activations there.
  With reset by subtraction this is the same network as scaling the layer's weights by lambda_prev / lambda
  and its bias by 1 / lambda with threshold 1 ("weight normalization"); keeping the weights and moving the
  threshold needs no knowledge of which layer feeds which, and a spike carries its threshold, so the logits
  keep the ANN's scale. Bounded activations (CQ, QCFS, clamp) keep their clip: there it is a no-op.
- ``calibrate_bias``: layer-wise bias calibration (Li et al., ICML 2021, "light pipeline"). Even at T = Q
  an IF neuron fed by spikes, not by a constant current, does not emit exactly the quantized activation
  (the "unevenness error", Bu et al., ICLR 2022): its inputs arrive unevenly over time. Layer by layer, in
  forward order, the mean per-channel difference between the ANN's activation and the SNN's time-averaged
  output (rate * threshold) is added to the bias of the conv/linear layer that feeds the neuron, so each
  layer is calibrated on the already corrected outputs of the layers before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from enofctl.errors import ConversionError
from enofctl.models.acts import QCFS, ClampQuant
from enofctl.models.base import replace_module
from enofctl.schema import CalibratedLayer, Calibration, NeuronSpec
from enofctl.spiking.bn import fold_bn_weights
from enofctl.spiking.neuron import SpikingNeuron
from enofctl.spiking.probe import capture, evaluating, time_mean


def if_neuron(spec: NeuronSpec, T: int, v_th: float) -> SpikingNeuron:
    """An integrate-and-fire neuron with its own threshold (a buffer, saved in the artifact); a spike carries
    the threshold it crossed, i.e. the clip of the ANN activation it replaces."""
    neuron = SpikingNeuron(spec, T, scaling="threshold")
    neuron.v_th.fill_(v_th)
    return neuron


def is_if(m: nn.Module) -> bool:
    return isinstance(m, SpikingNeuron) and m.scaling == "threshold"


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
    try:
        with evaluating(model):
            model(torch.zeros(2, *input_size))
    finally:
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
    weight, bias = fold_bn_weights(conv.weight, conv.bias, bn)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
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
    """The IF body of a bounded-activation ANN (a copy): BN folded, activations -> IF neurons, in place on
    ``ann``'s copy. Returns the body; wrap it in a SpikingNet.

    A ReLU (unbounded) gets threshold 1 here as a placeholder: its real threshold comes from
    ``normalize_thresholds`` at conversion, or from the artifact's ``v_th`` buffer when one is loaded (the
    convert stage refuses a ReLU teacher without data-based normalization)."""
    import copy

    body = fold_bn(copy.deepcopy(ann), input_size)
    acts = [(n, m) for n, m in body.named_modules() if isinstance(m, (ClampQuant, QCFS, nn.ReLU, nn.ReLU6))]
    if not acts:
        raise ConversionError("the model has no activations to make spiking")
    for name, m in acts:
        v_th = float(m.clip.detach()) if isinstance(m, QCFS) else 6.0 if isinstance(m, nn.ReLU6) else 1.0
        replace_module(body, name, if_neuron(neuron, T, v_th))
    if spiking_pool:
        for name, m in list(body.named_modules()):
            if isinstance(m, nn.AvgPool2d):
                replace_module(body, name, nn.Sequential(m, if_neuron(neuron, T, 1.0)))
    return body


# ----------------------------------------------------------------------------------------------------------
# data-driven steps after conversion


def _capture(net: nn.Module, root: nn.Module, x: torch.Tensor, names: Sequence[str],
             stop_after: str | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Run ``net(x)`` and return the outputs of ``root``'s modules ``names`` (and the net's output, unless
    the pass stopped early after ``stop_after``)."""
    return capture(net, {n: root.get_submodule(n) for n in names}, x, stop_after=stop_after)


def if_neurons(body: nn.Module, input_size: tuple[int, ...]) -> list[tuple[str, str | None]]:
    """The IF neurons of a converted body in the order a forward pass reaches them, each with the conv or
    linear layer that feeds it directly (its output tensor is the neuron's input, Identity in between
    allowed) and has a bias; None where there is none (after a pool, a residual sum, ...)."""
    T = next((m.T for m in body.modules() if is_if(m)), 1)
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # tensors kept alive so their ids stay unique
    order: list[tuple[str, str | None]] = []
    names = {m: n for n, m in body.named_modules()}

    def layer_hook(mod, inp, out):
        if mod.bias is not None:
            outputs[id(out)] = (names[mod], out)

    def neuron_hook(mod, inp):
        src = outputs.get(id(inp[0]))
        order.append((names[mod], src[0] if src is not None else None))

    hooks = [m.register_forward_hook(layer_hook) for m in body.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks += [m.register_forward_pre_hook(neuron_hook) for m in body.modules() if is_if(m)]
    try:
        with evaluating(body):
            body(torch.zeros(T, *input_size))
    finally:
        for h in hooks:
            h.remove()
    return order


def _positive_sample(a: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """At most ``k`` of the positive entries of ``a``, drawn uniformly (all of them if there are fewer)."""
    pos = a[a > 0].float().cpu()
    if pos.numel() > k:
        pos = pos[torch.randperm(pos.numel(), generator=gen)[:k]]
    return pos


@torch.no_grad()
def normalize_thresholds(snn: nn.Module, ann: nn.Module, batches: Sequence[torch.Tensor],
                         percentile: float = 99.9, seed: int = 0) -> dict[str, float]:
    """Data-based thresholds for the IF neurons that replace an unbounded activation (``nn.ReLU``), in place.

    Each such neuron's ``v_th`` becomes the ``percentile`` of the ANN's positive activations at that layer on
    ``batches`` (zeros say nothing about the scale; Rueckauer et al. 2017 use 99.9 to 99.999). Neurons that
    replace a bounded activation (CQ, QCFS, clamp, ReLU6) keep their clip: for a CQ network this changes
    nothing. ``snn`` is a SpikingNet of ``ann`` (same module names). Returns {neuron: new v_th}.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile {percentile} is not in (0, 100]")
    body = snn.body
    names = [n for n, m in body.named_modules() if is_if(m)]
    ann_mods = dict(ann.named_modules())
    relu = [n for n in names if isinstance(ann_mods.get(n), nn.ReLU)]
    if not relu:
        return {}
    per_batch = max(1, (1 << 22) // max(1, len(batches)))  # torch.quantile takes at most 2^24 values
    gen = torch.Generator().manual_seed(seed)
    samples: dict[str, list[torch.Tensor]] = {n: [] for n in relu}
    ann.eval()
    for x in batches:
        acts, _ = _capture(ann, ann, x, relu)
        for n in relu:
            samples[n].append(_positive_sample(acts[n], per_batch, gen))
    out = {}
    for n in relu:
        v = torch.cat(samples[n])
        lam = float(torch.quantile(v, percentile / 100)) if v.numel() else 1.0  # a dead layer: any threshold
        body.get_submodule(n).v_th.fill_(max(lam, 1e-6))
        out[n] = float(body.get_submodule(n).v_th)
    return out


def _channel_dims(src: nn.Module, a: torch.Tensor) -> list[int]:
    """The dimensions to average over for one value per channel of ``src``'s bias."""
    ch = a.dim() - 1 if isinstance(src, nn.Linear) else 1
    return [d for d in range(a.dim()) if d != ch]


def _classifier(net: nn.Module, root: nn.Module) -> str | None:
    """The qualified name (in ``root``) of ``net``'s classifier if it is a linear layer with a bias."""
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    if not isinstance(head, nn.Linear) or head.bias is None:
        return None
    return next((n for n, m in root.named_modules() if m is head), None)


class _Gaps:
    """Sums over the calibration batches of the gaps between the ANN's (clamped) activations and the SNN's
    time-averaged outputs, per IF neuron (and the logits): what ``calibrate_bias`` corrects and records."""

    def __init__(self, snn: nn.Module, ann: nn.Module, batches: Sequence[torch.Tensor], paired: list[str],
                 srcs: dict[str, str | None], progress: Callable[[int, int], None] | None, total: int):
        self.snn, self.ann, self.batches, self.paired, self.srcs = snn, ann, batches, paired, srcs
        self.progress, self.total, self.done = progress, total, 0

    def measure(self, upto: str | None) -> dict:
        """For the neurons up to ``upto`` (all of them and the logits if None): per-channel sums of
        (target - snn), mean |target - snn|, element counts, mean per-channel offsets, top-1 agreement."""
        body, T = self.snn.body, self.snn.T
        keep = self.paired if upto is None else self.paired[: self.paired.index(upto) + 1]
        diff: dict[str, torch.Tensor] = {}
        absd: dict[str, float] = {n: 0.0 for n in keep + ["logits"]}
        count: dict[str, int] = {n: 0 for n in keep + ["logits"]}
        agree = 0
        for x in self.batches:
            a_acts, a_out = _capture(self.ann, self.ann, x, keep, stop_after=upto)
            s_acts, s_out = _capture(self.snn, body, x, keep, stop_after=upto)
            pairs = [(n, a_acts[n].clamp(0, float(body.get_submodule(n).v_th)), time_mean(s_acts[n], T))
                     for n in keep]
            if upto is None:
                pairs.append(("logits", a_out, s_out))
                agree += int((a_out.argmax(1) == s_out.argmax(1)).sum())
            for n, a, s_ in pairs:
                d = a - s_
                absd[n] += float(d.abs().sum())
                count[n] += d.numel()
                src = self.srcs.get(n)
                if src is not None:
                    part = d.sum(dim=_channel_dims(body.get_submodule(src), d))
                    diff[n] = diff[n] + part if n in diff else part
            self.done += 1
            if self.progress:
                self.progress(self.done, self.total)
        n_img = sum(len(x) for x in self.batches)
        offset = {n: float((d / (count[n] // d.numel())).abs().mean()) for n, d in diff.items()}
        return {"diff": diff, "gap": {n: absd[n] / max(count[n], 1) for n in absd}, "count": count,
                "offset": offset, "agree": agree / n_img if upto is None else None}


@torch.no_grad()
def calibrate_bias(snn: nn.Module, ann: nn.Module, batches: Sequence[torch.Tensor], iterations: int = 1,
                   readout: bool = False, input_size: tuple[int, ...] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Calibration:
    """Layer-wise bias calibration of a converted IF network against its ANN, in place (Li et al. 2021).

    For each IF neuron in forward order that a conv/linear with a bias feeds directly, and that has an ANN
    activation of the same name: run the SNN (with every earlier layer already calibrated) and the ANN on
    ``batches``, take the mean per channel of ``clamp(ANN activation, 0, v_th) - SNN output averaged over
    T`` and add it to that bias. With ``readout``, last the same for the classifier (a linear readout of the
    time-averaged features) against the ANN's logits: it removes any per-class offset of the logits, but on
    Fashion-MNIST (vgg7, T = Q = 8) it cost 0.2 points of top-1, so it is off by default. ``iterations``
    repeats the sweep (a second one changed nothing there). The SNN runs at its current T: the correction is
    tuned to that T. Returns a record with each layer's gap before and after.
    ``snn`` is a SpikingNet of ``ann`` (same module names); ``batches`` are normalized inputs on its device.
    """
    body = snn.body
    ann.eval()
    snn.eval()
    ann_mods = dict(ann.named_modules())
    order = if_neurons(body, input_size or tuple(batches[0].shape[1:]))
    paired = [n for n, _ in order if n in ann_mods]  # spiking-pool neurons have no ANN counterpart
    todo = [(n, src) for n, src in order if src is not None and n in ann_mods]
    head = _classifier(snn, body) if readout and _classifier(ann, ann) is not None else None
    todo += [("logits", head)] if head is not None else []
    total = (1 + iterations * len(todo)) * len(batches)  # before (it also serves the first step), steps, after
    gaps = _Gaps(snn, ann, batches, paired, {**dict(order), "logits": head}, progress, total)
    before = stats = gaps.measure(None)
    shifts: dict[str, torch.Tensor] = {}
    for _ in range(iterations):
        for n, src in todo:
            if stats is None:
                stats = gaps.measure(None if n == "logits" else n)
            bias = body.get_submodule(src).bias
            shift = stats["diff"][n] / (stats["count"][n] // bias.numel())  # the mean over each channel
            bias.add_(shift.to(bias.dtype))
            shifts[n] = shifts[n] + shift if n in shifts else shift
            stats = None
    after = gaps.measure(None) if shifts else before
    samples = sum(len(x) for x in batches)
    return _bias_record(snn, order, ann_mods, shifts, before, after, iterations, head, samples)


def _bias_record(snn: nn.Module, order, ann_mods, shifts, before: dict, after: dict, iterations: int,
                 head: str | None, samples: int) -> Calibration:
    body = snn.body
    layers = []
    for n, src in order:
        corrected = n in shifts
        layers.append(CalibratedLayer(
            name=n, v_th=float(body.get_submodule(n).v_th), threshold_from="clip" if n in ann_mods else "pool",
            bias_of=src if corrected else None, shift=float(shifts[n].abs().mean()) if corrected else None,
            gap_before=before["gap"].get(n), gap_after=after["gap"].get(n),
            offset_before=before["offset"].get(n), offset_after=after["offset"].get(n),
        ))
    return Calibration(
        T=snn.T, samples=samples, bias_iterations=iterations,
        agreement_before=before["agree"], agreement_after=after["agree"],
        logit_gap_before=before["gap"]["logits"], logit_gap_after=after["gap"]["logits"],
        classifier=head if "logits" in shifts else None,
        classifier_shift=float(shifts["logits"].abs().mean()) if "logits" in shifts else None, layers=layers,
    )
