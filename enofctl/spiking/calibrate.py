"""Calibrating a converted surrogate (LIF or IF) student against its teacher, so it works before training.

A plain copy of the teacher's weights into EnOF's LIF network scores chance: at T = 4 with a leak of 0.25
and a hard reset, a neuron driven by a constant current ``x`` fires at every step when ``x > v_th``, a few
times when ``x`` is just below it, and never below about ``(1 - decay) * v_th``: it is close to a 1-bit
quantizer of its input, while the next layer expects the ANN's analog activation. The copy also keeps the
ANN's BatchNorm statistics, which do not describe the currents behind spiking layers.

``calibrate_student`` fits, layer by layer in forward order, each channel's threshold and the amplitude a
spike carries downstream (so the network keeps the neuron the user chose — its leak, reset and time steps —
and only moves where it fires and what a spike is worth):

    for neuron l, with every earlier neuron already calibrated:
        x  = the student's input current to l on the calibration images ([T*B, C, ...], or [B, ...] when the
             same current repeats at every step)
        a  = the teacher's activation at l on the same images ([B, C, ...])
        for each channel c and each candidate threshold th = m_k * q_c (q_c: a high percentile of x's
        positive values in channel c, m_k on a geometric grid):
            r   = the neuron's time-averaged spikes for x with threshold th (its own dynamics)
            A   = <a, r> / <r, r>                    (least squares: the amplitude that best matches a)
            err = |a|^2 - <a, r>^2 / <r, r>
        refine each channel's best multiple with 6 more between its grid neighbours; keep the threshold
        with the least err, and its A (a channel whose best A is not positive never fires: its threshold is
        set far above its inputs)
    then the student's classifier is refitted to the teacher's logits (``fit_readout``: ridge regression
    towards its current weights, the teacher's)

This is the data-based normalization of Diehl et al. (2015) and Rueckauer et al. (2017) — a threshold per
layer from the activation statistics — made per channel, fitted to the leaky neuron's real response at the
chosen T, and done greedily on the already-calibrated student's own currents, as Li et al. (2021) calibrate
layer by layer. No labels and no gradient steps are used. The fitted values live in per-channel buffers of
each neuron (``SpikingSpec.scaling = "channel"``), which `distill`, `eval` and everything that loads the
student honour; ``ChannelCalibration`` keeps every choice and each layer's error before and after. Such a
neuron takes its surrogate gradient as the spec's neuron on the rescaled input (see ``neuron_step``), so
training from the calibrated start is as stable as from the plain copy.

``reestimate_bn`` recomputes BatchNorm statistics under the spiking dynamics instead (the first fix the
plain copy suggests); benchmarks/calibration.md measures it alone and before the fit, where it does worse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from enofctl.errors import CalibrationError
from enofctl.models.norm import recompute_bn
from enofctl.schema import CalibratedChannels, ChannelCalibration
from enofctl.spiking.convert import logits_of
from enofctl.spiking.neuron import SpikingNeuron, neuron_sequence, per_channel
from enofctl.spiking.probe import capture, evaluating, time_mean

# Candidate thresholds, as multiples of a channel's high input percentile: from far below (a channel whose
# activations are mostly small) to above it.
DEFAULT_GRID = tuple(float(m) for m in torch.logspace(-1.5, 0.25, 12).tolist())
AGREEMENT_BATCHES = 2  # the record's top-1 agreement with the teacher is measured on the first batches
FIT_SAMPLES = 1 << 17  # values per channel a fit looks at (the first images' worth; deep layers see all images)
FIT_T = 16  # above this T a fit looks at FIT_SAMPLES * FIT_T / T values, so its cost stops growing with T
_NEVER = 1e4  # a threshold this many times a channel's input scale: the channel never fires


def _seen(net: nn.Module, module: nn.Module, x: torch.Tensor, what: Literal["input", "output"]) -> torch.Tensor:
    """``module``'s input (``what="input"``) or output when ``net`` runs on ``x`` (the pass stops there)."""
    got, _ = capture(net, {"seen": module}, x, stop_after="seen", what=what, clone=True)
    return got["seen"]


def _teacher_target(ann: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The teacher's activation at ``module`` ([B, C, ...]); on event frames ``x`` ([B, T, C, H, W], each
    frame through the ANN) its mean over the frames, the time average the student's spikes are fitted to."""
    if x.dim() != 5:
        return _seen(ann, module, x, "output")
    return time_mean(_seen(lambda frames: logits_of(ann, frames), module, x, "output"), x.shape[1])


def _channel_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but 1 (channels) -> [C]."""
    return t.transpose(0, 1).reshape(t.shape[1], -1).sum(1) if t.dim() > 1 else t.sum().view(1)


def _percentile(xs: list[torch.Tensor], q: float, cap: int = 1 << 16) -> torch.Tensor:
    """Per channel, the ``q``-th percentile of the positive values of ``xs`` (at most ``cap`` of them, taken
    at an even stride; a channel with none: 1)."""
    C = xs[0].shape[1] if xs[0].dim() > 1 else 1
    out = torch.ones(C)
    flat = torch.cat([x.transpose(0, 1).reshape(C, -1) for x in xs], 1).float().cpu()
    for c in range(C):
        pos = flat[c][flat[c] > 0]
        if pos.numel() > cap:
            pos = pos[:: pos.numel() // cap]
        if pos.numel():
            out[c] = max(float(torch.quantile(pos, q / 100)), 1e-6)
    return out


def _first_images(xs: list[torch.Tensor], targets: list[torch.Tensor], n: int, T: int,
                  repeat: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The inputs and targets of the first ``n`` images (inputs are [T*B, ...] unless ``repeat``)."""
    out_x, out_a = [], []
    for x, a in zip(xs, targets, strict=True):
        k = min(n, len(a))
        out_x.append(x[:k] if repeat else x.unflatten(0, (T, -1))[:, :k].flatten(0, 1))
        out_a.append(a[:k])
        n -= k
        if n <= 0:
            break
    return out_x, out_a


@dataclass
class _Fit:
    v_th: torch.Tensor  # [C]
    amp: torch.Tensor  # [C]
    silent: torch.Tensor  # [C] bool: never fires
    error_before: float
    error_after: float


def _try(neuron: SpikingNeuron, xs, targets, th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For thresholds ``th`` [C]: the least-squares amplitude [C] and the squared error left, ``|a|^2 - <a,r>^2 /
    <r,r>`` without its constant ``|a|^2`` [C]."""
    spec, T, repeat = neuron.spec, neuron.T, neuron.repeat_input
    s_ar = torch.zeros_like(th)
    s_rr = torch.zeros_like(th)
    for x, a in zip(xs, targets, strict=True):
        r = time_mean(neuron_sequence(x, spec, T, repeat, v_th=per_channel(th, x)), T)
        s_ar += _channel_sum(a * r)
        s_rr += _channel_sum(r * r)
    amp = torch.where(s_rr > 0, s_ar / s_rr.clamp(min=1e-12), torch.zeros_like(s_rr)).clamp(min=0)
    return amp, -amp * s_ar


@torch.no_grad()
def _fit_layer(neuron: SpikingNeuron, xs: list[torch.Tensor], targets: list[torch.Tensor],
               grid: Sequence[float], percentile: float, refine: int = 3) -> _Fit:
    """Per-channel threshold and amplitude for ``neuron`` from its inputs ``xs`` and the teacher's activations
    ``targets``, with the relative error before (the spec's threshold, amplitude 1) and after. The grid's
    best multiple is refined per channel with ``2 * refine`` points between its neighbours. At most
    ``FIT_SAMPLES`` values per channel are used (the first images; fewer above ``FIT_T``)."""
    xs, targets = _first_images(xs, targets, _images_needed(targets, neuron.T), neuron.T, neuron.repeat_input)
    base = _percentile(xs, percentile).to(xs[0].device)  # [C]
    s_aa = sum(_channel_sum(a * a) for a in targets)
    best_err = torch.full_like(base, float("inf"))
    best_m, best_amp = torch.ones_like(base), torch.zeros_like(base)

    def consider(m: torch.Tensor) -> None:
        nonlocal best_err, best_m, best_amp
        amp, err = _try(neuron, xs, targets, base * m)
        better = err < best_err
        best_err, best_m, best_amp = (torch.where(better, new, old) for new, old in
                                      ((err, best_err), (m, best_m), (amp, best_amp)))

    for m in grid:
        consider(torch.full_like(base, m))
    step = (max(grid) / min(grid)) ** (1 / max(1, len(grid) - 1))  # the grid's ratio between neighbours
    coarse = best_m.clone()
    for j in [j for j in range(-refine, refine + 1) if j]:
        consider(coarse * step ** (j / (refine + 1)))
    silent = best_amp <= 0
    best_th = torch.where(silent, base * _NEVER, base * best_m)
    best_amp = torch.where(silent, torch.ones_like(best_amp), best_amp)
    before = _relative_error(neuron, xs, targets, torch.full_like(base, neuron.spec.v_th), torch.ones_like(base))
    after = float((s_aa + best_err).clamp(min=0).sum() / s_aa.sum().clamp(min=1e-12))
    return _Fit(best_th, best_amp, silent, before, after)


def _relative_error(neuron: SpikingNeuron, xs, targets, th: torch.Tensor, amp: torch.Tensor) -> float:
    spec, T, repeat = neuron.spec, neuron.T, neuron.repeat_input
    num = den = 0.0
    for x, a in zip(xs, targets, strict=True):
        r = time_mean(neuron_sequence(x, spec, T, repeat, v_th=per_channel(th, x)), T) * per_channel(amp, a)
        num += float(((a - r) ** 2).sum())
        den += float((a * a).sum())
    return num / max(den, 1e-12)


def reestimate_bn(net: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """BatchNorm running statistics of ``net`` recomputed on ``batches`` (cumulative average), in place."""
    recompute_bn(net, batches)


@torch.no_grad()
def agreement(snn: nn.Module, ann: nn.Module, batches: Sequence[torch.Tensor]) -> float:
    """The fraction of images on which the student's top-1 is the teacher's. Non-finite student logits raise
    CalibrationError (a calibrated student must compute)."""
    same = n = 0
    for x in batches:
        logits = snn(x)
        if not torch.isfinite(logits).all():
            raise CalibrationError("the calibrated student's outputs are not finite on the calibration images "
                                   "(is a teacher weight non-finite?); nothing was written")
        same += int((logits.argmax(1) == logits_of(ann, x).argmax(1)).sum())
        n += len(x)
    return same / max(n, 1)


def _agreement_or_none(snn: nn.Module, ann: nn.Module, batches: Sequence[torch.Tensor]) -> float | None:
    """``agreement`` before calibration, where the plain copy's outputs may well be non-finite: then None."""
    try:
        return agreement(snn, ann, batches)
    except CalibrationError:
        return None


def _images_needed(targets: list[torch.Tensor], T: int) -> int:
    """How many images give a channel ``FIT_SAMPLES`` values (all of them for small feature maps); above
    ``FIT_T`` time steps proportionally fewer (at least one batch), so a fit costs about the same at any T
    (benchmarks/calibration_cost.md)."""
    a = targets[0]
    per_image = a[0].numel() // (a.shape[1] if a.dim() > 1 else 1)
    values = FIT_SAMPLES * min(1.0, FIT_T / T)
    return min(sum(len(t) for t in targets), max(len(a), -(-int(values) // per_image)))


@torch.no_grad()
def calibrate_student(snn: nn.Module, ann: nn.Module, batches: Sequence[torch.Tensor], *,
                      grid: Sequence[float] = DEFAULT_GRID, percentile: float = 99.0,
                      readout_ridge: float | None = 0.1, bn_reestimate: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> ChannelCalibration:
    """Fit every spiking neuron of ``snn`` (a SpikingNet of ``ann`` with ``scaling="channel"``) to the
    teacher's activations, in place (see the module's docstring). ``batches``: normalized training images
    on the student's device. Returns the record for the manifest."""
    t0 = time.perf_counter()
    snn.eval()
    ann.eval()
    neurons = snn.neurons()
    if any(m.scaling != "channel" for m in neurons.values()):
        raise ValueError("calibrate_student needs a student built with scaling='channel'")
    ann_mods = dict(ann.named_modules())
    probe = batches[:AGREEMENT_BATCHES]
    before = _agreement_or_none(snn, ann, probe)
    layers = []
    for i, (name, neuron) in enumerate(neurons.items()):
        if progress:
            progress(i, len(neurons))
        if bn_reestimate:  # the BatchNorms before this neuron: statistics of the calibrated student's currents
            recompute_bn(snn, batches, lambda net, x, n=neuron: _seen(net, n, x, "input"))
        targets = [_teacher_target(ann, ann_mods[name], x) for x in batches]
        n, used = _images_needed(targets, neuron.T), []
        for x in batches:  # only the batches the fit looks at
            used.append(x)
            if sum(len(u) for u in used) >= n:
                break
        xs = [_seen(snn, neuron, x, "input") for x in used]
        fit = _fit_layer(neuron, xs, targets[: len(used)], grid, percentile)
        neuron.v_th.copy_(fit.v_th)
        neuron.amp.copy_(fit.amp)
        layers.append(_layer_record(name, fit))
    if bn_reestimate:  # the BatchNorms after the last neuron (before the classifier)
        recompute_bn(snn, batches)
    readout = fit_readout(snn, ann, batches, readout_ridge) if readout_ridge is not None else None
    if progress:
        progress(len(neurons), len(neurons))
    return ChannelCalibration(
        T=snn.T, samples=sum(len(x) for x in batches), batches=len(batches), grid=list(grid),
        percentile=percentile, agreement_before=before, agreement_after=agreement(snn, ann, probe),
        readout_ridge=readout_ridge if readout is not None else None, readout_shift=readout,
        seconds=time.perf_counter() - t0, layers=layers, bn_reestimated=bn_reestimate,
    )


@torch.no_grad()
def fit_readout(snn: nn.Module, ann: nn.Module, batches: Sequence[torch.Tensor], ridge: float) -> float | None:
    """The student's linear classifier refitted, in closed form, to map its own output features to the
    teacher's logits on ``batches``: ``argmin |[f_s, 1] W - z_t|^2 + ridge * n * |W - W_now|^2`` (ridge
    regression towards the current weights, the teacher's). Returns the mean |change| of the weights, or None
    when the classifier is not a linear layer with a bias."""
    fc = snn.get_classifier()
    if not isinstance(fc, nn.Linear) or fc.bias is None:
        return None
    feats = torch.cat([snn.forward_feature(x) for x in batches]).double()  # [N, F]
    z_t = torch.cat([logits_of(ann, x) for x in batches]).double()  # [N, K]
    x = torch.cat([feats, feats.new_ones(len(feats), 1)], 1)  # [N, F + 1]
    w_now = torch.cat([fc.weight, fc.bias[:, None]], 1).double()  # [K, F + 1]
    reg = ridge * len(x) * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(x.T @ x + reg, x.T @ z_t + reg @ w_now.T).T  # [K, F + 1]
    if not torch.isfinite(w).all():
        raise CalibrationError("the readout fit produced non-finite weights; nothing was written")
    fc.weight.copy_(w[:, :-1].to(fc.weight.dtype))
    fc.bias.copy_(w[:, -1].to(fc.bias.dtype))
    return float((w - w_now).abs().mean())


def _layer_record(name: str, fit: _Fit) -> CalibratedChannels:
    live = ~fit.silent
    return CalibratedChannels(
        name=name, channels=int(live.numel()), silent_channels=int(fit.silent.sum()),
        v_th_mean=float(fit.v_th[live].mean()) if live.any() else 0.0,
        amp_mean=float(fit.amp[live].mean()) if live.any() else 0.0,
        error_before=fit.error_before, error_after=fit.error_after,
    )


def reconstruct(snn: nn.Module, ann: nn.Module, batches: Sequence[torch.Tensor], steps: int, lr: float,
                progress: Callable[[int, int], None] | None = None,
                batch_size: int | None = None) -> tuple[float, float, float]:
    """A few surrogate-gradient steps that pull the calibrated student towards its teacher on the calibration
    images (no labels), in place: Adam on every weight, BatchNorm with its running statistics, minimizing

        mean over neurons l of |A_l r_l - a_l|^2 / |a_l|^2   +   KL(softmax(z_teacher) || softmax(z_student))

    (``A_l r_l``: neuron l's time-averaged output, ``a_l``: the teacher's activation there), the batches (cut
    into ``batch_size`` pieces when given) taken in turn. The per-layer term is the calibration's own
    objective, now optimized jointly through the surrogate gradients; the KL keeps the logits the teacher's.
    Returns (loss of the first step, mean loss of the last ``len(batches)`` steps, seconds)."""
    import torch.nn.functional as F

    t0 = time.perf_counter()
    if batch_size:  # steps on smaller batches: the same images, a fraction of the cost per step
        batches = [c for x in batches for c in x.split(batch_size)]
    neurons = snn.neurons()
    mods = dict(ann.named_modules())
    with torch.no_grad():
        targets = [{n: _teacher_target(ann, mods[n], x) for n in neurons} for x in batches]
        logits_t = [logits_of(ann, x) for x in batches]
    outs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(n, o)) for n, m in neurons.items()]
    params = [p for p in snn.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    losses: list[float] = []
    # eval: BatchNorm normalizes with the running statistics calibration used (and keeps them)
    try:
        with evaluating(snn, no_grad=False), torch.enable_grad():
            for step in range(steps):
                i = step % len(batches)
                logits = snn(batches[i])
                layer = sum(((time_mean(outs[n], snn.T) - targets[i][n]) ** 2).mean()
                            / (targets[i][n] ** 2).mean().clamp(min=1e-12) for n in neurons) / max(len(neurons), 1)
                kl = F.kl_div(logits.log_softmax(1), logits_t[i].log_softmax(1), log_target=True,
                              reduction="batchmean")
                loss = layer + kl
                if not torch.isfinite(loss):
                    raise CalibrationError(f"reconstruction step {step + 1}: non-finite loss; nothing was written "
                                           "(lower --reconstruct-lr)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if progress:
                    progress(step + 1, steps)
    finally:
        for h in hooks:
            h.remove()
        for p in params:
            p.grad = None
    tail = losses[-len(batches):] if losses else [0.0]
    return (losses[0] if losses else 0.0), sum(tail) / len(tail), time.perf_counter() - t0
