"""Progress: the events a library caller receives, the bar that restarts each epoch, the run-level estimate and
the closing summary, and plain unwrapped output when stdout/stderr are not terminals."""

from __future__ import annotations

import io
import logging

import pytest
from clihelp import ok
from rich.console import Console

from enofctl.cli import display
from enofctl.stages import ProgressEvent, TeacherConfig, log_progress, train_teacher


def _events(epochs: int = 3, steps: int = 4) -> list[ProgressEvent]:
    out = []
    for e in range(1, epochs + 1):
        out += [ProgressEvent("distill", e, epochs, s, steps) for s in range(1, steps + 1)]
        out.append(ProgressEvent("distill", e, epochs, steps, steps, metrics={"train_loss": 1.0 / e,
                                                                                "test_top1": 0.5, "seconds": 0.1}))
    return out


def test_fraction_of_the_run() -> None:
    assert ProgressEvent("x", 1, 4, 2, 4).fraction == pytest.approx(0.125)
    assert ProgressEvent("x", 4, 4, 4, 4).fraction == 1.0
    assert ProgressEvent("x", 1, 1, 0, 0).fraction == 0.0


def test_log_progress_for_library_callers(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[ProgressEvent] = []
    cfg = TeacherConfig(dataset="synthetic", model_kwargs={"width": 0.125}, epochs=2, limit_train=32, limit_test=16)
    with caplog.at_level(logging.INFO, logger="enofctl"):
        train_teacher(cfg, tmp_path / "t.safetensors", progress=lambda ev: (seen.append(ev), log_progress(ev)))
    finished = [ev for ev in seen if ev.metrics]
    assert [ev.epoch for ev in finished] == [1, 2] and finished[-1].fraction == 1.0
    assert seen[0].epoch == 0 and seen[0].steps == 0 and not seen[0].metrics and "test_top1" in seen[0].before
    assert all(ev.stage == "teacher-train" and 1 <= ev.step <= ev.steps for ev in seen[1:])
    lines = [r.getMessage() for r in caplog.records if r.name == "enofctl"]
    assert len(lines) == 3 and lines[0].startswith("teacher-train epoch 0/2 (before training)")
    assert lines[2].startswith("teacher-train epoch 2/2") and "test_top1" in lines[2]


def test_the_bar_restarts_each_epoch_and_the_run_ends_with_a_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system=None, highlight=False)
    monkeypatch.setattr(display, "err", console)
    bars = []

    class Recorded(display.Progress):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            bars.append(self)

    monkeypatch.setattr(display, "Progress", Recorded)
    with display.progress(False, "distill") as cb:
        for ev in _events():
            cb(ev)
            task = bars[0].tasks[0]
            if ev.step == 1 and not ev.metrics:  # a new epoch: a running clock, not the last epoch's frozen one
                assert task.finished_time is None and task.completed == 1, ev
    text = buf.getvalue()
    assert "distill epoch 1/3" in text and "left" in text
    assert "distill done: 3 epochs in" in text


def test_plain_lines_into_a_log(capsys: pytest.CaptureFixture) -> None:
    """Not a terminal: no bar, one unwrapped line per epoch however long, and the summary."""
    with display.progress(False, "distill") as cb:
        for ev in _events(epochs=2):
            ev.metrics = {**ev.metrics, **{f"metric_{i}": 0.5 for i in range(12)}} if ev.metrics else {}
            cb(ev)
    lines = capsys.readouterr().err.splitlines()
    assert [x.split("  ")[0] for x in lines] == ["distill epoch 1/2", "distill epoch 2/2",
                                                 "distill done: 2 epochs in 0:00"]
    assert all("metric_11" in x for x in lines)


def test_tables_into_a_pipe_are_not_cut(tmp_path) -> None:
    t = tmp_path / "a_teacher_with_a_rather_long_file_name_for_a_table.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "1", "--limit-train", "32",
       "--limit-test", "16", "--quiet", "--out", t)
    out = ok("eval", t, "--limit-test", "16", "--speed-batches", "2")
    assert "…" not in out and "artifact" in out and "ms/batch" in out
    assert all(len(line) < 400 for line in out.splitlines())


def test_into_a_log_a_line_per_layer_and_a_sign_of_life_every_interval(capsys: pytest.CaptureFixture,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal: a line per calibrated layer, the epoch-0 line, and a heartbeat line while a step takes
    longer than the interval (ENOFCTL_PROGRESS_SECONDS); a one-epoch run still ends with its done: line."""
    import time

    monkeypatch.setenv("ENOFCTL_PROGRESS_SECONDS", "0.05")
    with display.progress(False, "distill") as cb:
        for i in range(3):
            cb(ProgressEvent("calibrate", 1, 1, i, 2))
        cb(ProgressEvent("distill", 0, 1, 0, 0, before={"test_top1": 0.25, "seconds": 0.5}))
        cb(ProgressEvent("distill", 1, 1, 1, 4))
        time.sleep(1.3)  # a slow step: the heartbeat speaks
        cb(ProgressEvent("distill", 1, 1, 4, 4, metrics={"test_top1": 0.5, "seconds": 1.3}))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("calibrate layer 1/2 done") and lines[1].startswith("calibrate layer 2/2 and the "
                                                                                   "readout done"), lines
    assert lines[2].startswith("distill epoch 0/1 (before training)  test_top1 0.2500"), lines
    beats = [x for x in lines if x.startswith("distill: epoch 1/1, step 1/4 (")]
    assert beats and "since it began" in beats[0], lines
    assert lines[-2].startswith("distill epoch 1/1  test_top1 0.5000") and lines[-1].startswith("distill done: "
                                                                                               "1 epoch in"), lines


def test_the_run_estimate_counts_training_steps_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibration and the epoch-0 evaluation before the first step do not count; a resumed run's estimate
    comes from the part it ran."""
    now = {"t": 0.0}
    monkeypatch.setattr(display.time, "monotonic", lambda: now["t"])
    clock = display.RunClock()
    now["t"] = 500.0  # calibration and epoch 0 took 500 s
    clock.step(ProgressEvent("distill", 2, 4, 0, 10))  # resumed after epoch 1: 1/4 done
    now["t"] = 510.0
    ev = ProgressEvent("distill", 2, 4, 10, 10)  # 1/2 done: 1/4 of the run in 10 s
    clock.step(ev)
    assert clock.eta(ev) == pytest.approx(20.0) and clock.run_text(ev) == "run 0:10, about 0:20 left"
