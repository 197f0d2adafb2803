"""What a training checkpoint holds, and the one place it is written and read back (``--resume``).

A checkpoint (``OUT.ckpt``, beside the artifact, removed when training ends) is a torch file of plain
tensors and containers (read with ``weights_only=True``):
``{"stage", "epoch", "history", "model", "optimizer", "scheduler", "generator", "torch_rng", "best", "config",
"digest"}``. ``config`` is the run's options (and its inputs' sha256): ``--resume`` refuses other options,
except those in ``RESUME_SAFE``, which it records in the next history row. ``digest`` is a sha256 over
everything else (`state_digest`), so a flipped byte is refused.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from enofctl.artifacts import checkpoint_path
from enofctl.config.flags import flag_of
from enofctl.errors import ArtifactError, UsageError, first_line
from enofctl.io import atomic_write, regular_file, remove_stale_temps

__all__ = ["CHECKPOINT_KEYS", "RESUME_SAFE", "TrainState", "checkpoint_path", "finish_checkpoint", "read_checkpoint",
           "resume_changes", "state_digest"]

CHECKPOINT_KEYS = ("stage", "epoch", "history", "model", "optimizer", "scheduler", "generator", "torch_rng", "config",
                   "digest")
# options a resumed run may change (recorded in its history): none changes the draws of the epochs to come
RESUME_SAFE = ("epochs", "limit_test", "log_every", "workers")
# config keys whose option is not --key (nested configs' fields, model kwargs, the inputs' digests)

def finish_checkpoint(out: Path) -> None:
    path = checkpoint_path(out)
    path.unlink(missing_ok=True)
    remove_stale_temps(path)


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
    resumed: dict[str, Any] = field(default_factory=dict)  # safe options changed on --resume: their old values

    @property
    def train_seconds(self) -> float:
        """Training time so far, evaluation excluded (a checkpoint from before ``train_seconds``: the sum of
        its epochs' ``seconds``, evaluation included)."""
        if not self.history:
            return 0.0
        last = self.history[-1]
        return last["train_seconds"] if "train_seconds" in last else sum(r.get("seconds", 0.0) for r in self.history)

    def record(self, row: dict[str, float]) -> None:
        """Append a finished epoch's row (with ``resumed_<option>_was`` after a resume that changed a safe
        option); keep its weights when its validation top-1 is the best so far."""
        row = {**row, **{f"resumed_{k}_was": v for k, v in self.resumed.items()}}
        self.resumed = {}
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

    def save(self, path: Path, stage: str, config: dict[str, Any] | None = None) -> None:
        """Write the checkpoint atomically, with the run's ``config`` and the digest of it all."""
        state = {
            "stage": stage, "epoch": self.epoch, "history": self.history, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(), "best": self.best,
            "config": config or {},
        }
        state["digest"] = state_digest(state)
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: Path, stage: str, config: dict[str, Any] | None = None) -> None:
        """Continue from the checkpoint at ``path``: a clear one-line error if it is not one of ours, was
        modified, belongs to another stage, was written with other options than ``config`` (but those in
        ``RESUME_SAFE``) or does not fit this model and recipe."""
        state = read_checkpoint(path, stage)
        self.resumed = resume_changes(path, state["config"], config or {}, state["epoch"])
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ArtifactError(f"{path} does not fit this run ({first_line(e, 160)}); delete it, or resume with "
                                "the options it was started with") from e
        self.epoch, self.history, self.best = state["epoch"], state["history"], state.get("best")


def read_checkpoint(path: Path, stage: str) -> dict[str, Any]:
    """The checkpoint's contents, checked: a regular, non-empty file, our keys, an intact digest, the right
    stage, an epoch count and a history list."""
    if regular_file(path).st_size == 0:
        raise ArtifactError(f"{path} is empty (not a training checkpoint); delete it to start over")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles above our one line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors of many types
        why = "it holds objects other than tensors" if "Weights only load failed" in str(e) else first_line(e, 160)
        raise ArtifactError(f"{path} is not a readable training checkpoint ({why}); delete it to start over") from e
    if not isinstance(state, dict):
        raise ArtifactError(f"{path} is not an enofctl training checkpoint; delete it to start over")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ArtifactError(f"{path} is not an enofctl training checkpoint (no {', '.join(missing)}); delete it "
                            "to start over")
    body = {k: v for k, v in state.items() if k != "digest"}
    if state["digest"] != state_digest(body):
        raise ArtifactError(f"{path}: checkpoint does not match its digest (modified or corrupt file); delete it "
                            "to start over")
    if state["stage"] != stage:
        raise UsageError(f"{path} belongs to a {state['stage']} run, not {stage}")
    if not isinstance(state["epoch"], int) or state["epoch"] < 0 or not isinstance(state["history"], list):
        raise ArtifactError(f"{path}: bad epoch count or history; delete it to start over")
    if not isinstance(state["config"], dict):
        raise ArtifactError(f"{path}: bad recorded options; delete it to start over")
    best = state.get("best")
    if best is not None and not (isinstance(best, dict) and {"epoch", "val_top1", "model"} <= best.keys()):
        raise ArtifactError(f"{path}: bad best-epoch record; delete it to start over")
    return state


def state_digest(obj: Any) -> str:
    """sha256 over a checkpoint's contents: containers in key order, tensors by dtype, shape and bytes,
    everything else by type and repr."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(b"[")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def resume_changes(path: Path, old: dict[str, Any], new: dict[str, Any], done: int) -> dict[str, Any]:
    """The options in ``RESUME_SAFE`` that differ between the checkpoint's ``old`` config and this run's
    ``new`` one, with their old values; a UsageError naming every other option that differs (and for fewer
    ``--epochs`` than the checkpoint has finished)."""
    a, b = dict(_flat(old)), dict(_flat(new))
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k, _ABSENT) != b.get(k, _ABSENT))
    unsafe = [k for k in differ if k not in RESUME_SAFE]
    if unsafe:
        said = ", ".join(f"{flag_of(k)} {_shown(a.get(k, _ABSENT))} (now {_shown(b.get(k, _ABSENT))})"
                         for k in unsafe)
        raise UsageError(f"{path} was written with other options: {said}; resume with the checkpoint's options, "
                         "or delete it to start over")
    epochs = b.get("epochs")
    if isinstance(epochs, int) and epochs < done:
        raise UsageError(f"--epochs {epochs}: {path} has already finished {done} epochs")
    return {k: a[k] for k in differ if k in a}  # an option the checkpoint predates is not a change


_ABSENT = object()


def _flat(d: dict[str, Any], prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v and k in ("act", "neuron", "model_kwargs"):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "unset"
    text = str(value)
    return text if len(text) <= 24 else text[:12] + "..."
