"""A training run's set-up happens once (`stages.context.RunContext`): one `distill` checks its recipe, reads
torchrun's environment, splits off validation and places its data once each; the library writes no CLI state;
report and plots read the schema's result models without any stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import enofctl.stages.context as context
from enofctl import data as data_module
from enofctl import distributed, signals
from enofctl.errors import UsageError
from enofctl.stages.context import RunContext


class _Counted:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_one_distill_run_sets_up_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from enofctl.stages.distill import DistillConfig, distill
    from enofctl.stages.teacher import TeacherConfig, train_teacher

    teacher = tmp_path / "t.safetensors"
    train_teacher(TeacherConfig(dataset="synthetic", model="resnet20", model_kwargs={"width": 0.125}, epochs=1,
                                limit_train=64, workers=0, eval_before=False), teacher)
    counted = {name: _Counted(getattr(context, name)) for name in
               ("check_recipe", "launch", "split_validation", "data_on", "limit_train")}
    for name, fn in counted.items():
        monkeypatch.setattr(context, name, fn)
    launched = _Counted(distributed.launch)
    monkeypatch.setattr(distributed, "launch", launched)
    ranks_here = _Counted(context.Ranks.here)
    monkeypatch.setattr(context.Ranks, "here", ranks_here)
    splits = _Counted(data_module.split_validation)
    monkeypatch.setattr(data_module, "split_validation", splits)  # no module calls it past the context
    cfg = DistillConfig(T=2, epochs=1, limit_train=64, batch_size=32, calibrate=1, reconstruct=0, workers=0,
                        val_fraction=0.25)
    signals.reset()
    res = distill(cfg, teacher, tmp_path / "s.safetensors")
    assert res.manifest.metrics.best_epoch == 1
    assert {name: fn.calls for name, fn in counted.items()} == {
        "check_recipe": 1, "launch": 1, "split_validation": 1, "data_on": 1, "limit_train": 1}
    assert launched.calls == 0  # torchrun's environment: read once, where the device is chosen
    assert ranks_here.calls == 0 and splits.calls == 0  # the ranks come with the device; no other split
    assert signals.checkpoint is None  # the library names no checkpoint for the CLI's interrupt line


def test_placed_data_is_checked_again_only_when_it_differs() -> None:
    cfg = context_cfg(cutout=20)
    info = data_module.dataset_info("synthetic")  # 16x16 images: --cutout 20 does not fit
    with pytest.raises(UsageError, match="--cutout 20 is larger than the 16x16 images of synthetic"):
        RunContext.build(cfg, info, torch.device("cpu"))
    bigger = data_module.DatasetInfo(**{**info.__dict__, "image_size": (32, 32)})
    run = RunContext.build(cfg, bigger, torch.device("cpu"))  # checked against what the edge knew
    with pytest.raises(UsageError, match="--cutout 20 is larger"):
        run.placed(data_module.load_dataset("synthetic"))  # the data read has other images: checked again


def context_cfg(**kw):
    from enofctl.stages.common import TrainConfig

    return TrainConfig(workers=0, **kw)


def test_fit_needs_placed_data() -> None:
    from enofctl.stages.loop import Trainee, fit

    run = RunContext.build(context_cfg(), data_module.dataset_info("synthetic"), torch.device("cpu"))
    with pytest.raises(ValueError, match="placed"):
        fit(Trainee("t", torch.nn.Linear(2, 2), None, (0.0,), (1.0,)), run)


def test_report_and_plots_import_no_stage() -> None:
    code = ("import sys, json, enofctl.report, enofctl.plots; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('enofctl.stages', 'enofctl.ops', "
            "'enofctl.spiking', 'enofctl.neurobench_adapter', 'enofctl.data')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_result_models_live_in_the_schema_and_keep_their_versions() -> None:
    import importlib

    from enofctl.schema import ablation, export, report

    ablate_stage, evaluate_stage, export_stage = (importlib.import_module(f"enofctl.stages.{name}")
                                                  for name in ("ablate", "evaluate", "export"))

    assert evaluate_stage.EvalResult is report.EvalResult and evaluate_stage.REPORT_SCHEMA_VERSION == 2
    assert export_stage.VerifyResult is export.VerifyResult and export.EXPORT_SCHEMA_VERSION == 1
    assert ablate_stage.Cell is ablation.Cell and ablation.ABLATION_SCHEMA_VERSION == 2
    assert ablate_stage.AblationResult.model_fields["config"].annotation is ablate_stage.AblateConfig
