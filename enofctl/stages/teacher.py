"""Stage 1: an ANN teacher, trained here (`train_teacher`) or fetched with pretrained weights (`fetch_teacher`)."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from enofctl import artifacts
from enofctl.artifacts import Artifact
from enofctl.config.teacher import FetchConfig, TeacherConfig  # (re-exported)
from enofctl.data import Data, DatasetInfo, dataset_info, load_dataset
from enofctl.datasets.registry import dataset
from enofctl.errors import ConversionError, DataError, UsageError, first_sentence
from enofctl.io import regular_file
from enofctl.models import build_model, forward_problem
from enofctl.models.acts import apply_act, fitted_clip
from enofctl.models.build import check_recorded_kwargs
from enofctl.schema import DataRef, Manifest, ModelSpec, TeacherMetrics
from enofctl.spiking import logits_of
from enofctl.spiking.convert import activation_order
from enofctl.spiking.probe import evaluating
from enofctl.stages.batches import accuracy, batches_on
from enofctl.stages.context import RunContext, resolve_device
from enofctl.stages.loop import RunIO, Trainee, fit
from enofctl.stages.optim import seed_everything
from enofctl.stages.progress import ProgressFn, StageWarning
from enofctl.stages.results import StageResult, Trained, best_metrics, save_trained
from enofctl.stages.train_state import checkpoint_path


def model_spec_for(data: Data, name: str | None, kwargs: dict[str, Any]) -> ModelSpec:
    default_name, default_kwargs = dataset(data.info.name).default_model()
    if name is None:
        name, kwargs = default_name, {**default_kwargs, **kwargs}
    i = data.info
    return ModelSpec(name=name, kwargs=kwargs, num_classes=i.num_classes, in_chans=i.in_chans,
                     input_size=(i.in_chans, *i.image_size), mean=i.mean, std=i.std)


SMALL_MODELS = "resnet20 or resnet19 (with --width), or vgg7"  # made for 8-32 px images


def _check_runs(model: nn.Module, spec: ModelSpec) -> None:
    problem = forward_problem(model, spec.input_size)
    if problem is not None:
        h, w = spec.input_size[1:]
        raise UsageError(f"model {spec.name!r} cannot run on {tuple(spec.input_size)} inputs: {problem}; if its "
                         f"downsampling needs larger images than {h}x{w} (enofctl does not resize), use a model "
                         f"made for small images, {SMALL_MODELS}, or a dataset with larger images")


def _residual(model: nn.Module) -> bool:
    names = {type(m).__name__.lower() for m in model.modules()}
    return any(n in ("basicblock", "bottleneck") or "resnet" in n or "residual" in n for n in names)


def check_for_snn(model: nn.Module, spec: ModelSpec) -> None:
    """Refuse, before any training, a teacher that cannot become a good spiking student: activations
    without a spiking form (SiLU, GELU, attention...), or clamped / CQ activations on a residual network
    (they saturate along the residual stream: a clamp-trained resnet20 stayed at chance on digits)."""
    if spec.act.kind in ("clamp", "cq") and _residual(model):
        raise UsageError(f"--act {spec.act.kind} on {spec.name!r}, a residual network, trains to about chance "
                         "(clamped activations saturate along the residual stream); use a plain network "
                         "(--model vgg7) or --act qcfs, or pass --no-check to train it anyway")
    try:
        activation_order(model, spec.input_size)
    except ConversionError as e:
        raise UsageError(f"{spec.name!r} could not become a spiking student: {e}. Use a ReLU network (e.g. "
                         f"{SMALL_MODELS}, or a timm ResNet/VGG), or pass --no-check to train it anyway") from e


@dataclass
class CrossEntropyStep:
    """The teacher's training step: cross-entropy (with label smoothing) of the network's logits."""

    label_smoothing: float = 0.0

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return F.cross_entropy(logits_of(net, x), y, label_smoothing=self.label_smoothing), {}


def _teacher_model(cfg: TeacherConfig, data: Data, init: Artifact | None) -> tuple[ModelSpec, nn.Module]:
    """The network to train and its spec: a fresh timm model, or ``init``'s weights with ``cfg.act``."""
    if init is None:
        spec = model_spec_for(data, cfg.model, cfg.model_kwargs).model_copy(update={"act": cfg.act})
        return spec, apply_act(build_model(spec.name, spec.num_classes, spec.in_chans, spec.kwargs), cfg.act)
    spec = init.manifest.model
    if init.manifest.data.dataset != cfg.dataset or (cfg.model and cfg.model != spec.name):
        raise UsageError(f"--init {cfg.init or init.path} is a {spec.name} for {init.manifest.data.dataset}; "
                         f"it does not match --model/--dataset")
    model = init.build_ann()
    fit = cfg.act.kind == "qcfs" and spec.act.kind == "relu" and cfg.qcfs_clip == "fit"
    clips = _relu_clips(model, data, spec, cfg) if fit else {}
    apply_act(model, cfg.act)
    for name, clip in clips.items():  # each QCFS where a ReLU was: the clip that quantizes its outputs best
        with torch.no_grad():
            model.get_submodule(name).clip.fill_(clip)
    return spec.model_copy(update={"act": cfg.act}), model  # staged CQ training: relu -> clamp -> cq


def _relu_clips(model: nn.Module, data: Data, spec: ModelSpec, cfg: TeacherConfig,
                batches: int = 4, per_layer: int = 200_000) -> dict[str, float]:
    """Per ReLU of ``model`` (by name), the QCFS clip with the least squared quantization error on its
    outputs over ``batches`` training batches (eval mode; a seeded draw of at most ``per_layer`` values per
    layer, an equal share from each batch): a ReLU teacher fine-tuned with --act qcfs starts near its own
    accuracy, not from QCFS's clip of 8."""
    outputs: dict[str, list[torch.Tensor]] = {}
    gen = torch.Generator().manual_seed(cfg.seed)
    share = max(per_layer // batches, 1)  # the same share of the sample from each batch

    def keep(name: str, x: torch.Tensor) -> None:
        a = torch.relu(x.detach()).flatten().cpu()
        outputs.setdefault(name, []).append(a[torch.randperm(a.numel(), generator=gen)[:share]])

    relus = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: keep(n, args[0])) for n, m in relus]
    try:
        with evaluating(model):
            for x, _ in batches_on(data.train, next(model.parameters()).device, spec.mean, spec.std,
                                   batch_size=cfg.batch_size, shuffle=True, generator=gen,
                                   limit=batches * cfg.batch_size):
                model(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: fitted_clip(torch.cat(v), cfg.act.levels) for n, v in outputs.items()}


def teach(cfg: TeacherConfig, data: Data, init: Artifact | None = None, io: RunIO | None = None,
          run: RunContext | None = None) -> Trained:
    """The core of `teacher train`: a teacher trained on ``data`` (optionally from ``init``'s weights), with
    its manifest; nothing is read or written here but the checkpoint ``io`` names. ``run``: the run's context
    (built here when not given)."""
    run = (run or RunContext.build(cfg, data.info)).placed(data)  # once, for training and the final test
    device, data = run.device, run.data
    seed_everything(cfg.seed)
    spec, model = _teacher_model(cfg, data, init)
    _check_runs(model, spec)
    if cfg.for_snn:
        check_for_snn(model, spec)
    model.to(device)
    trainee = Trainee("teacher-train", model, CrossEntropyStep(cfg.label_smoothing), spec.mean, spec.std)
    history = fit(trainee, run, io)
    metrics = TeacherMetrics(**accuracy(model, data.test, device, spec.mean, spec.std, limit=cfg.limit_test,
                                        shard=run.ranks.shard),  # the weights saved
                             **best_metrics(history))
    manifest = Manifest(
        kind="teacher", stage="teacher-train", model=spec,
        data=DataRef(dataset=cfg.dataset, data_dir=cfg.data_dir, classes=list(data.classes), frames=data.frames,
                     train_subset=data.train_subset),
        config=cfg.model_dump(), metrics=metrics, history=history,
        parents=[init.parent_ref()] if init is not None else [],
    )
    return Trained(model, manifest)


def train_teacher(cfg: TeacherConfig, out: str | Path, resume: bool = False,
                  progress: ProgressFn | None = None) -> StageResult:
    """`teacher train`: read the data (and ``cfg.init``), train (`teach`), write ``out``."""
    out = artifacts.check_output_path(out, inputs=(cfg.init,), checkpoint=True)
    run = RunContext.build(cfg, dataset_info(cfg.dataset))  # the recipe checked before any data is read
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download, frames=cfg.frames, image_size=cfg.image_size)
    init = artifacts.load(cfg.init, expect="teacher") if cfg.init else None
    inputs = {"init": init.sha256} if init is not None else {}
    trained = teach(cfg, data, init, RunIO(checkpoint_path(out), resume, progress, inputs), run)
    return save_trained(out, trained, run.ranks)


def _pretrained(cfg: FetchConfig, info: DatasetInfo) -> nn.Module:
    """The timm model with its pretrained weights (from ``cfg.checkpoint`` or the hub), for ``info``'s classes.
    Without a network the hub is not asked at all (offline mode: only its local cache), so the failure is one
    line within seconds, not a minute of retries."""
    import timm

    if not timm.is_model(cfg.model):
        build_model(cfg.model, 1, 1)  # raises the unknown-model error
    check_recorded_kwargs(cfg.model_kwargs)
    if cfg.checkpoint:
        regular_file(cfg.checkpoint)  # a FIFO would block the reader
    overlay = {"file": str(Path(cfg.checkpoint).resolve())} if cfg.checkpoint else None
    try:
        with _quiet_hub(offline=not cfg.checkpoint and not hub_reachable()):
            return timm.create_model(cfg.model, pretrained=True, pretrained_cfg_overlay=overlay,
                                     num_classes=info.num_classes, in_chans=info.in_chans, **cfg.model_kwargs)
    except Exception as e:  # network errors, missing weights, bad checkpoints: many types
        first = first_sentence(e)
        if cfg.checkpoint:
            raise DataError(f"cannot load weights for {cfg.model} from {cfg.checkpoint}: {first}") from e
        raise DataError(f"cannot download pretrained weights for {cfg.model} ({first}); offline? pass "
                        "--checkpoint PATH (.safetensors or a timm/torch checkpoint)") from e


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) answers a TCP connection within ``timeout`` seconds;
    True behind a proxy (which this check cannot see through) and when the hub is set offline already."""
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _quiet_hub(offline: bool):
    """huggingface_hub's retry and warning logs silenced (the failure becomes one line); with ``offline``, its
    offline mode (``HF_HUB_OFFLINE``) for the call, so only its local cache is read."""
    import logging
    import os

    loggers = [logging.getLogger(n) for n in ("huggingface_hub", "timm")]
    levels = [lg.level for lg in loggers]
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    try:
        import huggingface_hub.constants as hub_constants
    except ImportError:
        hub_constants = None
    saved_const = getattr(hub_constants, "HF_HUB_OFFLINE", None)
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR + 10)
        if offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
            if hub_constants is not None:
                hub_constants.HF_HUB_OFFLINE = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if offline:
            if saved_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = saved_env
            if hub_constants is not None:
                hub_constants.HF_HUB_OFFLINE = saved_const


def describe_fetched(cfg: FetchConfig, model: nn.Module, info: DatasetInfo, data: Data | None) -> Trained:
    """The core of `teacher fetch`: the fetched model checked and measured on ``data`` (None: not available
    here, no metrics), with its manifest."""
    spec = ModelSpec(name=cfg.model, kwargs=cfg.model_kwargs, num_classes=info.num_classes,
                     in_chans=info.in_chans, input_size=(info.in_chans, *info.image_size), mean=info.mean,
                     std=info.std)
    _check_runs(model, spec)
    metrics = TeacherMetrics()  # nothing measured without the data
    if data is not None:
        device = resolve_device("auto")
        metrics = TeacherMetrics(**accuracy(model.to(device), data.test, device, spec.mean, spec.std))
        model.cpu()
    manifest = Manifest(
        kind="teacher", stage="teacher-fetch", model=spec,
        data=DataRef(dataset=cfg.dataset, data_dir=cfg.data_dir,
                     classes=list(data.classes if data is not None else info.classes),
                     frames=data.frames if data is not None else None),
        config=cfg.model_dump(), metrics=metrics,
    )
    return Trained(model, manifest)


def fetch_teacher(cfg: FetchConfig, out: str | Path) -> StageResult:
    """A timm model with pretrained weights, re-headed to the dataset's classes when they differ.

    Weights come from ``cfg.checkpoint`` (loaded by timm: safetensors, or torch with weights_only) or from
    the Hugging Face hub when online. A re-headed classifier is untrained: fine-tune it with
    ``teacher train --init``.
    """
    out = artifacts.check_output_path(out, inputs=(cfg.checkpoint,))
    info = dataset_info(cfg.dataset)
    model = _pretrained(cfg, info)
    data = None
    if cfg.evaluate:
        try:
            data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
        except DataError as e:
            warnings.warn(f"{cfg.dataset} is not available here ({e}); the teacher was saved without test "
                          "accuracy: pass --data-dir or --download to measure it", StageWarning, stacklevel=2)
    result = describe_fetched(cfg, model, info, data)
    saved = artifacts.save(out, result.manifest, result.weights())
    return StageResult(saved.path, saved.manifest)
