"""What a training checkpoint holds, and the one place it is written and read back (``--resume``).

A checkpoint (``OUT.ckpt``, beside the artifact, removed when training ends) is a torch file of plain
tensors and containers (read with ``weights_only=True``):
``{"stage", "epoch", "history", "model", "optimizer", "scheduler", "generator", "torch_rng", "best"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from enofctl.errors import ArtifactError, UsageError
from enofctl.io import atomic_write

CHECKPOINT_KEYS = ("stage", "epoch", "history", "model", "optimizer", "scheduler", "generator", "torch_rng")


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def finish_checkpoint(out: Path) -> None:
    checkpoint_path(out).unlink(missing_ok=True)


@dataclass
class TrainState:
    """The live training objects plus the run's progress: finished epochs, the history and the best epoch.

    ``best`` is ``{"epoch", "val_top1", "model": weights on the CPU}`` of the best validation epoch so far.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    @property
    def train_seconds(self) -> float:
        """Training time so far, evaluation excluded (a checkpoint from before ``train_seconds``: the sum of
        its epochs' ``seconds``, evaluation included)."""
        if not self.history:
            return 0.0
        last = self.history[-1]
        return last["train_seconds"] if "train_seconds" in last else sum(r.get("seconds", 0.0) for r in self.history)

    def record(self, row: dict[str, float]) -> None:
        """Append a finished epoch's row; keep its weights when its validation top-1 is the best so far."""
        self.history.append(row)
        self.epoch = int(row["epoch"])
        val = row.get("val_top1")
        if val is not None and (self.best is None or val > self.best["val_top1"]):
            weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self.best = {"epoch": self.epoch, "val_top1": val, "model": weights}

    def restore_best(self) -> None:
        """Give the model the best validation epoch's weights (nothing to do without validation)."""
        if self.best is not None:
            self.model.load_state_dict(self.best["model"])

    def save(self, path: Path, stage: str) -> None:
        state = {
            "stage": stage, "epoch": self.epoch, "history": self.history, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(), "best": self.best,
        }
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: Path, stage: str) -> None:
        """Continue from the checkpoint at ``path``: a clear one-line error if it is not one of ours, belongs
        to another stage or does not fit this model and recipe."""
        state = read_checkpoint(path, stage)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"{path} does not fit this run ({_first_line(e)}); delete it, or resume with the "
                                "options it was started with") from e
        self.epoch, self.history, self.best = state["epoch"], state["history"], state.get("best")


def read_checkpoint(path: Path, stage: str) -> dict[str, Any]:
    """The checkpoint's contents, checked: our keys, the right stage, an epoch count and a history list."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors of many types
        raise ArtifactError(f"{path} is not a readable training checkpoint ({_first_line(e)}); delete it to "
                            "start over") from e
    if not isinstance(state, dict):
        raise ArtifactError(f"{path} is not an enofctl training checkpoint; delete it to start over")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ArtifactError(f"{path} is not an enofctl training checkpoint (no {', '.join(missing)}); delete it "
                            "to start over")
    if state["stage"] != stage:
        raise UsageError(f"{path} belongs to a {state['stage']} run, not {stage}")
    if not isinstance(state["epoch"], int) or state["epoch"] < 0 or not isinstance(state["history"], list):
        raise ArtifactError(f"{path}: bad epoch count or history; delete it to start over")
    best = state.get("best")
    if best is not None and not (isinstance(best, dict) and {"epoch", "val_top1", "model"} <= best.keys()):
        raise ArtifactError(f"{path}: bad best-epoch record; delete it to start over")
    return state


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__
