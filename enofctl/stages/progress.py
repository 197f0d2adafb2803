"""How a stage reports: the progress events its optional callback receives, a ready-made callback that logs
them, and the warning class of what a stage did differently from what was asked."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ProgressEvent:
    """What a stage's ``progress`` callback receives: ``step`` of ``steps`` in ``epoch`` of ``epochs`` (1-based)
    of ``stage`` ("teacher-train", "distill", "calibrate", "eval"). After each training step ``metrics`` is
    empty; once an epoch has ended and been evaluated the stage sends one more event with ``step == steps``
    and that epoch's history row as ``metrics`` (``train_loss``, ``test_top1``, ``seconds``, ...). The
    untrained model's evaluation (history row 0) comes as one event with ``epoch == 0``, no steps and the row
    as ``before`` (``metrics`` empty)."""

    stage: str
    epoch: int
    epochs: int
    step: int
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    before: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """How much of the whole run is done, in [0, 1] (for a run-level estimate of the time left)."""
        return min(1.0, max(0.0, (self.epoch - 1 + self.step / max(self.steps, 1)) / max(self.epochs, 1)))


ProgressFn = Callable[[ProgressEvent], None]


class StageWarning(UserWarning):
    """Something a stage did differently from what was asked, without failing (``warnings.warn``): e.g.
    `fetch_teacher` saving a teacher without test accuracy because the dataset is not available here."""


def log_progress(ev: ProgressEvent) -> None:
    """A ready-made ``progress`` callback for library callers: one ``logging`` line (logger ``enofctl``, level
    INFO) for the epoch-0 evaluation and per finished epoch, e.g.
    ``train_teacher(cfg, out, progress=log_progress)``."""
    row = ev.metrics or ev.before
    if row:
        shown = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, (int, float)))
        logging.getLogger("enofctl").info("%s epoch %d/%d%s  %s", ev.stage, ev.epoch, ev.epochs,
                                          "" if ev.metrics else " (before training)", shown)
