"""The training recipe config (`TrainConfig`, defined without torch in `enofctl.config.train`), shared by
`teacher train` and `distill`, and the names the stages used to import from here, each now in the module of
its concern (re-exported):

- `enofctl.stages.progress`: progress events and callbacks, `StageWarning`;
- `enofctl.stages.context`: the device, the recipe checks and the run context built once per run;
- `enofctl.stages.optim`: seeding, the optimizer and the schedule;
- `enofctl.stages.batches`: batches on the device and accuracy over them;
- `enofctl.stages.results`: a core's and a stage's results, `save_trained`, the best-epoch bookkeeping.

The epoch loop is in `enofctl.stages.loop`, what its checkpoints hold in `enofctl.stages.train_state`."""

from __future__ import annotations

from enofctl.config.train import TrainConfig
from enofctl.stages.batches import accuracy, batches_on, n_batches, topk_correct
from enofctl.stages.context import check_recipe, resolve_device
from enofctl.stages.optim import cosine_with_warmup, make_optimizer, param_groups, seed_everything
from enofctl.stages.progress import ProgressEvent, ProgressFn, StageWarning, log_progress
from enofctl.stages.results import StageResult, Trained, best_epoch, best_metrics, check_finite, save_trained

__all__ = [
    "ProgressEvent", "ProgressFn", "StageResult", "StageWarning", "TrainConfig", "Trained", "accuracy", "batches_on",
    "best_epoch", "best_metrics", "check_finite", "check_recipe", "cosine_with_warmup", "log_progress",
    "make_optimizer", "n_batches", "param_groups", "resolve_device", "save_trained", "seed_everything",
    "topk_correct",
]
