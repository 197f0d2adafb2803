"""ANN -> spiking network: swap activations for spiking neurons (RepAct keeps the last one as ReLU) and run
the timm model with time folded into the batch.

Only the neurons loop over time; every convolution, norm, pool and linear layer sees ``[T*B, ...]``,
so BatchNorm statistics are shared over time and the model's own ``forward_features`` / ``forward_head``
are reused unchanged.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn as nn

from enofctl.errors import ConversionError, UsageError
from enofctl.models.acts import BOUNDED
from enofctl.models.base import replace_module
from enofctl.schema import SpikingSpec
from enofctl.spiking.neuron import SpikingNeuron
from enofctl.spiking.packing import SpikePacker
from enofctl.spiking.probe import evaluating

CONVERTIBLE = (nn.ReLU, nn.ReLU6, *BOUNDED)
_ACT_MODULES = ("torch.nn.modules.activation", "timm.layers.activations", "timm.layers.activations_me",
                "timm.layers.activations_jit")


def _is_activation(m: nn.Module) -> bool:
    return type(m).__module__ in _ACT_MODULES or isinstance(m, CONVERTIBLE)


def activation_order(model: nn.Module, input_size: tuple[int, int, int],
                     channels: dict[str, int] | None = None) -> list[str]:
    """Qualified names of the activation modules in the order a forward pass calls them (and, into
    ``channels`` when given, each one's channel count: dimension 1 of its output).

    Raises ConversionError for activations that cannot spike, attention blocks, or one module used twice.
    """
    for name, m in model.named_modules():
        if "attention" in type(m).__name__.lower():
            raise ConversionError(f"cannot convert {name!r} ({type(m).__name__}): attention has no spiking form")
    calls: list[str] = []
    found = {} if channels is None else channels

    def seen_call(name: str, out: torch.Tensor) -> None:
        calls.append(name)
        found[name] = out.shape[1] if out.dim() > 1 else 1

    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=name: seen_call(n, o))
        for name, m in model.named_modules()
        if _is_activation(m) or isinstance(m, SpikingNeuron)
    ]
    # a (partly) spiking model folds time into the batch: one sample needs T rows
    rows = max((m.T for m in model.modules() if isinstance(m, SpikingNeuron)), default=1)
    try:
        with evaluating(model):
            model(torch.zeros(rows, *input_size))
    except RuntimeError as e:  # e.g. an input size that does not fit the model
        raise ConversionError(f"cannot run the model on an input of size {tuple(input_size)}: "
                              f"{str(e).splitlines()[0][:200]}") from e
    finally:
        for h in hooks:
            h.remove()
    seen: set[str] = set()
    for name in calls:
        if name in seen:
            raise ConversionError(f"cannot convert {name!r}: the module is called more than once per forward; "
                                  "give each use its own activation module")
        seen.add(name)
        m = model.get_submodule(name)
        if not isinstance(m, CONVERTIBLE + (SpikingNeuron,)):
            raise ConversionError(f"cannot convert {name!r} ({type(m).__name__}): only ReLU activations can "
                                  "become spiking neurons")
    if not calls:
        raise ConversionError("the model has no activation modules to make spiking")
    return calls



def make_spiking(ann: nn.Module, spec: SpikingSpec, input_size: tuple[int, int, int]) -> SpikingNet:
    """A spiking copy of ``ann`` (a timm model): same weights, activations replaced by neurons."""
    if spec.method == "cq":
        from enofctl.spiking.cq import make_if_snn

        return SpikingNet(make_if_snn(ann, spec.neuron, spec.T, input_size, spec.spiking_pool), spec)
    body = copy.deepcopy(ann)
    channels: dict[str, int] = {}
    order = activation_order(body, input_size, channels)
    for i, name in enumerate(order):
        last = i == len(order) - 1
        inplace = bool(getattr(body.get_submodule(name), "inplace", False))
        replace_module(body, name, nn.ReLU(inplace=inplace) if (last and spec.repact)
                       else SpikingNeuron(spec.neuron, spec.T, inplace, spec.scaling, channels[name]))
    if spec.shortcut_scales:  # a folded calibrated student: identity shortcuts with a per-channel factor
        from enofctl.spiking.fold import install_shortcut_scales

        install_shortcut_scales(body, spec.shortcut_scales)
    net = SpikingNet(body, spec)
    net.first_neuron = order[0] if isinstance(body.get_submodule(order[0]), SpikingNeuron) else None
    net.stem_once = spec.encoding == "direct" and _stem_can_run_once(net, input_size)  # event frames differ
    return net


def _stem_can_run_once(net: SpikingNet, input_size: tuple[int, ...]) -> bool:
    """Whether the layers before the first neuron can run once per image instead of once per step.

    Under direct encoding they see the same image at every step, so this holds whenever nothing but the
    first neuron consumes them; checked on a probe (shapes and values, eval mode, a private generator so
    the global random state is untouched) rather than assumed.
    """
    if net.first_neuron is None:
        return False
    probe = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    try:
        with evaluating(net):
            with net.every_step():
                every_step = net.forward_feature(probe)
            with net.mode(stem_once=True):
                once = net.forward_feature(probe)
            return once.shape == every_step.shape and torch.allclose(once, every_step, rtol=1e-4, atol=1e-5)
    except RuntimeError:
        return False


class SpikingNet(nn.Module):
    """A converted timm model run over T steps. Output: logits averaged over time, ``[B, classes]``.

    Two things make a training forward cheaper than running the ANN T times, neither changing the result:
    with ``stem_once`` the layers before the first neuron run once per image (direct encoding repeats the
    image, so they would compute the same thing T times) and the first neuron takes that output at every
    step; with ``pack_spikes`` the spike tensors autograd keeps for backward are stored as bits.
    """

    def __init__(self, body: nn.Module, spec: SpikingSpec):
        super().__init__()
        self.body, self.spec = body, spec
        self.first_neuron: str | None = None  # qualified name of the neuron a forward reaches first
        self.frames_in = nn.Identity()  # event encoding: the folded frames pass here, where hooks can see them
        self.stem_once = False
        self.pack_spikes = True
        self.set_T(spec.T)

    @property
    def T(self) -> int:
        return self.spec.T

    def set_T(self, T: int) -> None:
        """Change the number of time steps (e.g. to evaluate a sweep) without touching the weights."""
        self.spec = self.spec.model_copy(update={"T": T})
        for m in self.neurons().values():
            m.T = T

    def neurons(self) -> dict[str, SpikingNeuron]:
        return {n: m for n, m in self.body.named_modules() if isinstance(m, SpikingNeuron)}

    @contextlib.contextmanager
    def mode(self, *, stem_once: bool | None = None, repeat_input: bool | None = None) -> Iterator[SpikingNet]:
        """Within the block, ``stem_once`` set on the net and ``repeat_input`` on every neuron (None: left as
        is); on exit, exception or not, both are back to what they were on entry, so blocks nest.

        ``repeat_input`` matters to code that runs ``body`` itself (a forward of the net sets the first
        neuron's flag from ``stem_once``): ``repeat_input=False`` makes every row of a ``[T*B, ...]`` input one
        step of one image."""
        neurons = list(self.neurons().values())
        saved_stem, saved_repeat = self.stem_once, [m.repeat_input for m in neurons]
        try:
            if stem_once is not None:
                self.stem_once = stem_once
            if repeat_input is not None:
                for m in neurons:
                    m.repeat_input = repeat_input
            yield self
        finally:
            self.stem_once = saved_stem
            for m, repeat in zip(neurons, saved_repeat, strict=True):
                m.repeat_input = repeat

    def every_step(self) -> contextlib.AbstractContextManager[SpikingNet]:
        """``mode(stem_once=False, repeat_input=False)``: every layer computes at every step (the convention
        operation counts follow, whatever shortcut training takes)."""
        return self.mode(stem_once=False, repeat_input=False)

    def get_classifier(self) -> nn.Module:
        return self.body.get_classifier()

    def forward_feature(self, x: torch.Tensor) -> torch.Tensor:
        """The output feature f_s: the pooled last-block output averaged over T, ``[B, F]``."""
        b, T = x.shape[0], self.T
        if self.spec.encoding == "event":  # frame t at step t: [B, T, C, H, W] -> [T*B, C, H, W]
            if x.dim() != 5 or x.shape[1] != T:
                raise UsageError(f"an event-encoded student at T={T} takes [B, {T}, C, H, W] frames, "
                                 f"got {tuple(x.shape)}")
            x = self.frames_in(fold_frames(x))  # [T*B, C, H, W]
        elif x.dim() == 5:
            raise UsageError("a directly encoded student takes images [B, C, H, W], not event frames")
        if self.first_neuron is not None:
            self.body.get_submodule(self.first_neuron).repeat_input = self.stem_once
        if not self.stem_once and self.spec.encoding == "direct":  # the image at every step, [T*B, C, H, W]
            x = x.unsqueeze(0).expand(T, *x.shape).flatten(0, 1)
        packing = self.pack_spikes and torch.is_grad_enabled()
        with SpikePacker() if packing else contextlib.nullcontext():
            feat = self.body.forward_head(self.body.forward_features(x), pre_logits=True)  # [T*B, F]
        return feat.view(T, b, -1).mean(0)  # [B, F]

    def forward_with_feature(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f_s = self.forward_feature(x)
        return self.get_classifier()(f_s), f_s

    def forward(self, x: torch.Tensor, with_feature: bool = False):
        """Logits ``[B, K]``; with ``with_feature``, ``(logits, f_s)`` (the form DDP training calls)."""
        logits, f_s = self.forward_with_feature(x)
        return (logits, f_s) if with_feature else logits


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """A batch of frame sequences ``[B, T, C, H, W]`` -> time-major ``[T*B, C, H, W]`` (rows t*B .. t*B+B-1
    are frame t), the layout of a time-folded network."""
    return x.transpose(0, 1).flatten(0, 1)


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``; for an ANN given event frames ``[B, T, C, H, W]``, every frame through the ANN with time
    folded into the batch and the logits averaged over T (how a teacher reads event data)."""
    if isinstance(model, SpikingNet) or x.dim() != 5:
        return model(x)
    return model(fold_frames(x)).unflatten(0, (x.shape[1], -1)).mean(0)  # [T*B, K] -> [B, K]


def ann_forward_with_feature(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, output feature) of a timm ANN, through its own forward_head(pre_logits) and classifier. On
    event frames ``[B, T, C, H, W]`` both are averaged over the frames (see ``logits_of``)."""
    if isinstance(model, SpikingNet):
        return model.forward_with_feature(x)
    if x.dim() == 5:  # event frames
        T = x.shape[1]
        f = model.forward_head(model.forward_features(fold_frames(x)), pre_logits=True)  # [T*B, F]
        return model.get_classifier()(f).unflatten(0, (T, -1)).mean(0), f.unflatten(0, (T, -1)).mean(0)
    f = model.forward_head(model.forward_features(x), pre_logits=True)
    return model.get_classifier()(f), f
