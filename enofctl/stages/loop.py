"""The epoch loop shared by `teacher train` and `distill`: train an epoch, evaluate the splits, keep the best
validation epoch, write a checkpoint; before the first step, the untrained model's accuracy (epoch 0)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from enofctl.data import Augment, Data
from enofctl.distributed import Ranks
from enofctl.errors import TrainingError, UsageError
from enofctl.models.norm import batch_norms, recompute_bn
from enofctl.spiking import logits_of
from enofctl.stages.batches import accuracy, batches_on, n_batches
from enofctl.stages.common import TrainConfig
from enofctl.stages.context import RunContext
from enofctl.stages.optim import cosine_with_warmup, make_optimizer, seed_everything
from enofctl.stages.progress import ProgressEvent, ProgressFn, StageWarning
from enofctl.stages.results import check_finite
from enofctl.stages.train_state import TrainState

# step_loss(net, x, y) -> (loss, logged terms as detached 0-d tensors); net is the model, or its DDP wrapper
StepLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class LossSums:
    """An epoch's loss and logged terms, each summed over its samples on ``device`` (in float64, as Python
    floats were: the same sums), with the first step whose loss was not finite; read back only by ``check``
    and ``read``, the loop's only synchronizations."""

    def __init__(self, device: torch.device):
        self.device, self.seen = device, 0
        self.sums: dict[str, torch.Tensor] = {}
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)  # 0: none yet

    @property
    def names(self) -> list[str]:
        return list(self.sums)

    def add(self, step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor], n: int) -> None:
        for k, v in {"loss": loss, **terms}.items():
            v = torch.as_tensor(v, dtype=torch.float64, device=self.device).detach() * n  # a float: exactly
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        bad = ~torch.isfinite(loss) & (self.first_bad == 0)
        self.first_bad = torch.where(bad, step, self.first_bad)
        self.seen += n

    def check(self, epoch: int) -> None:
        """A TrainingError if a loss so far was not finite (one synchronization)."""
        step = int(self.first_bad)
        if step:
            raise TrainingError(f"non-finite loss at epoch {epoch}, step {step}; lower --lr "
                                "(the last good checkpoint is kept)")

    def read(self) -> dict[str, float]:
        """The sums as floats (one synchronization)."""
        if not self.sums:
            return {}
        return dict(zip(self.sums, torch.stack(list(self.sums.values())).tolist(), strict=True))


@dataclass
class Trainee:
    """What is trained: ``model`` (in place) with ``step_loss``, on inputs normalized with ``mean``/``std``;
    ``stage`` names the run in its checkpoint and progress events. ``frozen_norm``: the BatchNorm layers
    normalize with their running statistics while training and keep them (only their scale and shift train)."""

    stage: str
    model: nn.Module
    step_loss: StepLoss
    mean: tuple[float, ...]
    std: tuple[float, ...]
    frozen_norm: bool = False


def train_mode(model: nn.Module, frozen_norm: bool = False) -> None:
    """``model.train()``; with ``frozen_norm`` its BatchNorm layers stay in eval mode (running statistics
    used and not updated; their affine parameters still receive gradients)."""
    model.train()
    if frozen_norm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


@dataclass
class RunIO:
    """The loop's outside world: a checkpoint file after each epoch (None: none), whether to continue from
    it, and a progress callback."""

    checkpoint: Path | None = None
    resume: bool = False
    progress: ProgressFn | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # the input files' sha256, recorded in the checkpoint


@dataclass
class Loop:
    """One training run's parts, built by `fit`."""

    trainee: Trainee
    net: nn.Module
    state: TrainState
    data: Data
    cfg: TrainConfig
    ranks: Ranks
    steps: int
    progress: ProgressFn | None

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch over this rank's shard; the mean loss and terms over all ranks.

        The loss and its terms are summed on the device and read back (a synchronization) only every
        ``cfg.log_every`` steps and at the end of the epoch; a non-finite loss then stops the run, naming the
        first step that had one (the steps after it ran on, but no checkpoint is written)."""
        cfg, st, device = self.cfg, self.state, self.ranks.device
        train_mode(st.model, self.trainee.frozen_norm)
        sums = LossSums(device)
        augment = Augment(crop_flip=cfg.augment, autoaugment=cfg.autoaugment, cutout=cfg.cutout)
        it = batches_on(self.data.train, device, self.trainee.mean, self.trainee.std, batch_size=cfg.batch_size,
                        shuffle=True, augment=augment, generator=st.generator,
                        drop_last=True, shard=self.ranks.shard)
        for step, (x, y) in enumerate(it):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                loss, terms = self.trainee.step_loss(self.net, x, y)
            sums.add(step + 1, loss.detach(), terms, len(y))
            if (step + 1) % cfg.log_every == 0:
                sums.check(epoch)
            st.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(st.model.parameters(), cfg.grad_clip)
            st.optimizer.step()
            st.scheduler.step()
            if self.progress:
                self.progress(ProgressEvent(self.trainee.stage, epoch, cfg.epochs, step + 1, self.steps))
        sums.check(epoch)
        self.recompute_bn(epoch)
        self.ranks.sync_buffers(st.model)  # evaluate (and save) the same model on every rank
        totals = sums.read()
        *totals, seen = self.ranks.sum([*totals.values(), sums.seen])
        return {"epoch": epoch, **{k: v / max(seen, 1) for k, v in zip(sums.names, totals, strict=True)}}

    def recompute_bn(self, epoch: int) -> None:
        """BatchNorm's running statistics recomputed on ``cfg.bn_recompute`` batches of training samples,
        augmented as in training (the statistics the weights were trained with, as fvcore's precise BN does),
        with a generator of their own (seed and epoch) so the training draws are
        those of a run without it; the same batches on every rank (``models.norm.recompute_bn``). Not with
        frozen BatchNorm (its running statistics are the ones to keep)."""
        cfg = self.cfg
        if not cfg.bn_recompute or self.trainee.frozen_norm:
            return
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        augment = Augment(crop_flip=cfg.augment, autoaugment=cfg.autoaugment, cutout=cfg.cutout)
        it = batches_on(self.data.train, self.ranks.device, self.trainee.mean, self.trainee.std,
                        batch_size=cfg.batch_size, shuffle=True, generator=g, augment=augment,
                        limit=cfg.bn_recompute * cfg.batch_size)
        with torch.autocast(self.ranks.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            recompute_bn(self.state.model, (x for x, _ in it), lambda net, x: logits_of(net, x))

    def evaluate_splits(self) -> dict[str, float]:
        """``val_top1/top5`` (with a validation split) and ``test_top1/top5`` of the model as it is now."""
        row = {}
        for name, split in (("val", self.data.val), ("test", self.data.test)):
            if split is None:
                continue
            limit = self.cfg.limit_test if name == "test" else None
            acc = accuracy(self.state.model, split, self.ranks.device, self.trainee.mean, self.trainee.std,
                           limit=limit, shard=self.ranks.shard)
            row.update({f"{name}_{k}": v for k, v in acc.items() if k != "samples"})
        return row

    def epoch_zero(self) -> dict[str, float]:
        """The untrained model's accuracy, under a forked random state so training draws exactly as without it."""
        t0 = time.perf_counter()
        devices = [self.ranks.device] if self.ranks.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            row = {"epoch": 0, **self.evaluate_splits()}
            if not self.trainee.frozen_norm and batch_norms(self.state.model):
                row["test_top1_batch_bn"] = self.batch_bn_top1(self.data.test)
        return {**row, "seconds": time.perf_counter() - t0, "train_seconds": 0.0}

    @torch.no_grad()
    def batch_bn_top1(self, split) -> float:
        """top-1 of the model as training runs it with ``bn="batch"``: each BatchNorm normalizing a batch of
        ``cfg.batch_size`` test samples (in order) by that batch's statistics; the running statistics are left
        as they were. The start that training actually takes its first step from (epoch 0's
        ``test_top1_batch_bn``)."""
        model, cfg = self.state.model, self.cfg
        saved = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}
        train_mode(model)
        right = n = 0
        try:
            for x, y in batches_on(split, self.ranks.device, self.trainee.mean, self.trainee.std,
                                   batch_size=cfg.batch_size, limit=cfg.limit_test, shard=self.ranks.shard):
                right += int((logits_of(model, x).argmax(1) == y).sum())
                n += len(y)
        finally:
            model.load_state_dict(saved, strict=False)
            model.eval()
        right, n = self.ranks.sum([right, n])
        return right / max(n, 1)

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train and evaluate one epoch: its history row (``seconds`` with evaluation, ``train_seconds`` the
        training time of the whole run so far, without; ``schedule_epochs`` the length of the cosine schedule
        this epoch ran under, which a ``--resume`` with other ``--epochs`` changes, and ``lr`` the learning
        rate after its last step)."""
        t0 = time.perf_counter()
        row = self.train_epoch(epoch)
        row.update(schedule_epochs=self.cfg.epochs, lr=float(self.state.optimizer.param_groups[0]["lr"]))
        trained = time.perf_counter() - t0
        check_finite(self.state.model, f"after epoch {epoch}")
        row.update(self.evaluate_splits())
        return {**row, "seconds": time.perf_counter() - t0, "train_seconds": self.state.train_seconds + trained}


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def check_batches(model: nn.Module, n_train: int, cfg: TrainConfig, world: int = 1) -> None:
    """Refuse training batches of one image for a model with BatchNorm (its statistics need two), before any
    work: ``n_train`` images (before ``--limit-train``) shared by ``world`` processes."""
    if not any(isinstance(m, _BATCH_NORMS) for m in model.modules()):
        return
    n = n_train if cfg.limit_train is None else min(cfg.limit_train, n_train)
    per_rank = n // world
    smallest = cfg.batch_size if per_rank > cfg.batch_size else per_rank
    if smallest < 2:
        raise UsageError(f"training batches of {smallest} image(s) (--batch-size {cfg.batch_size}, {n} training "
                         "images): the model's BatchNorm needs at least 2 per batch; raise --batch-size or "
                         "--limit-train")


def run_config(cfg: TrainConfig, io: RunIO) -> dict[str, Any]:
    """What a checkpoint records of the run, for --resume to compare: the options and the inputs' sha256."""
    return {**cfg.model_dump(mode="json"), **{f"input:{k}": v for k, v in io.inputs.items()}}


def build_loop(trainee: Trainee, run: RunContext, progress: ProgressFn | None) -> Loop:
    """Seed, wrap for torchrun, and make the optimizer and schedule (in this order: the random draws of a run
    depend on it)."""
    cfg, ranks, data = run.cfg, run.ranks, run.data
    generator = seed_everything(cfg.seed)
    model, net = ranks.wrap(trainee.model, cfg.sync_bn)
    opt = make_optimizer(model, cfg)
    steps = n_batches(data.train, cfg.batch_size * ranks.size, cfg.limit_train, drop_last=True)
    sched = cosine_with_warmup(opt, cfg.epochs * steps, cfg.warmup_epochs * steps + cfg.warmup_steps)
    state = TrainState(model, opt, sched, generator)
    return Loop(trainee, net, state, data, cfg, ranks, steps, ranks.main_only(progress))


def fit(trainee: Trainee, run: RunContext, io: RunIO | None = None) -> list[dict[str, float]]:
    """Train ``trainee.model`` in place for ``cfg.epochs`` epochs on ``run.data`` (placed: `RunContext.placed`)
    with ``run``'s recipe ``cfg`` and ranks; returns the history (one row per epoch).

    With ``cfg.amp`` the step runs under bfloat16 autocast. Row 0 (``cfg.eval_before``) is the untrained
    model's accuracy. After each epoch the validation split (``cfg.val_fraction``) and the test split are
    evaluated and the checkpoint is written atomically, so an interrupted run continues with ``io.resume``
    from the last finished epoch. With validation, the model ends with the weights of the first epoch with
    the highest validation top-1 (``best_epoch(history)``), kept across a resume.
    """
    if run.data is None:
        raise ValueError("fit needs the run's data: RunContext.placed(data)")
    io = io or RunIO()
    cfg, ranks = run.cfg, run.ranks
    check_batches(trainee.model, len(run.data.train), cfg, ranks.size)
    loop = build_loop(trainee, run, io.progress)
    state, config = loop.state, run_config(cfg, io)
    if io.resume and io.checkpoint is not None and io.checkpoint.exists():
        state.load(io.checkpoint, trainee.stage, config)
    elif io.resume:
        warnings.warn(f"--resume: no checkpoint {io.checkpoint} to continue from; starting from the first epoch",
                      StageWarning, stacklevel=2)
    if cfg.eval_before and not state.history:
        state.history.append(loop.epoch_zero())
        if loop.progress:
            loop.progress(ProgressEvent(trainee.stage, 0, cfg.epochs, 0, 0, before=state.history[0]))
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        row = loop.epoch(epoch)
        state.record(row)
        if io.checkpoint is not None:
            ranks.on_main(lambda: state.save(io.checkpoint, trainee.stage, config))
        if loop.progress:
            loop.progress(ProgressEvent(trainee.stage, epoch, cfg.epochs, loop.steps, loop.steps, metrics=row))
    state.restore_best()
    return state.history
