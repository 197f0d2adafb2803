"""What a training core returns (`Trained`), what a stage's file-level function returns (`StageResult`), the
one place a trained model is written (`save_trained`), and the best-epoch bookkeeping of a history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from enofctl import artifacts
from enofctl.distributed import Ranks
from enofctl.errors import TrainingError
from enofctl.schema import Manifest
from enofctl.spiking import SpikingNet
from enofctl.stages.train_state import finish_checkpoint


@dataclass
class Trained:
    """A training core's result: the trained model (a timm ANN or a SpikingNet) and its manifest, not saved."""

    model: nn.Module
    manifest: Manifest

    def weights(self) -> dict[str, torch.Tensor]:
        """The tensors an artifact stores: a student's are its body's (the timm network with neurons)."""
        return (self.model.body if isinstance(self.model, SpikingNet) else self.model).state_dict()


@dataclass
class StageResult:
    """What a stage's file-level function returns: the artifact written and its manifest."""

    path: Path
    manifest: Manifest


def save_trained(out: Path, result: Trained, ranks: Ranks) -> StageResult:
    """Rank 0 writes the artifact and removes the training checkpoint; every rank returns the same result:
    the manifest as written, with its tensors' digest. A model with non-finite weights is not written."""
    check_finite(result.model, "in the trained model")
    weights = result.weights()
    written: list[Manifest] = []

    def write() -> None:
        written.append(artifacts.save(out, result.manifest, weights).manifest)
        finish_checkpoint(out)

    ranks.on_main(write)
    return StageResult(out, written[0] if written else artifacts.seal(result.manifest, weights))


def check_finite(model: nn.Module, when: str) -> None:
    """A TrainingError if a weight or buffer of ``model`` holds NaN or infinity: such a model is never
    checkpointed nor saved."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise TrainingError(f"non-finite weights ({name}) {when}; lower --lr or --weight-decay (the last good "
                                "checkpoint is kept)")


def best_epoch(history: list[dict]) -> dict | None:
    """The history row of the first trained epoch with the highest validation top-1 (None without validation;
    row 0, the untrained model, is not a candidate)."""
    rows = [r for r in history if r.get("val_top1") is not None and r.get("epoch", 1) >= 1]
    return max(rows, key=lambda r: r["val_top1"]) if rows else None


def best_metrics(history: list[dict]) -> dict[str, float]:
    """``best_epoch`` and ``best_val_top1`` for a manifest's metrics ({} without validation)."""
    row = best_epoch(history)
    return {} if row is None else {"best_epoch": int(row["epoch"]), "best_val_top1": row["val_top1"]}
