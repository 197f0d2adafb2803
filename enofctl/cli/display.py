"""Progress on stderr (rich) and results on stdout."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import BaseModel
from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from enofctl.stages.common import ProgressEvent, ProgressFn, StageWarning

err = Console(stderr=True)
err.soft_wrap = not err.is_terminal  # into a log file: one line per message, never wrapped at 80 columns
MAIN_RANK = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 talks
out = Console(soft_wrap=True, highlight=False)


def _fmt(metrics: dict) -> str:
    keep = {k: v for k, v in metrics.items() if k not in ("epoch", "seconds", "train_seconds", "test_top5", "val_top5")}
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in keep.items())


def duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``: a time span as a person reads it."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def print_table(table: Table) -> None:
    """A table on stdout: at the terminal's width, or, into a pipe or a file, at its natural width (no header
    cut to ``artifa...``)."""
    if out.is_terminal:
        out.print(table)
    else:
        natural = Measurement.get(out, out.options.update_width(10_000), table).maximum
        Console(file=sys.stdout, width=max(natural, 40), highlight=False).print(table)


@dataclass
class RunClock:
    """The run-level estimate: the time left from the fraction of the run done so far (training events)."""

    start: float = field(default_factory=time.monotonic)
    last: ProgressEvent | None = None
    summary: dict = field(default_factory=dict)

    def eta(self, ev: ProgressEvent) -> float | None:
        done, spent = ev.fraction, time.monotonic() - self.start
        return spent * (1 - done) / done if done > 0 and ev.epochs > 1 else None

    def run_text(self, ev: ProgressEvent) -> str:
        eta = self.eta(ev)
        return "" if eta is None else f"run {duration(time.monotonic() - self.start)}, about {duration(eta)} left"


@contextlib.contextmanager
def progress(quiet: bool, what: str) -> Iterator[ProgressFn | None]:
    """A callback for the stages' progress events: a bar per epoch (restarted each epoch, with the time left in
    the epoch and in the whole run), one log line per finished epoch and a closing summary line."""
    if quiet or not MAIN_RANK:
        yield None
        return
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[run]}"),
                   console=err, transient=True,
                   disable=not err.is_terminal)  # no live bar into pipes/logs: it would leave blank lines
    task, epoch, clock = None, None, RunClock()

    def on_event(ev: ProgressEvent) -> None:
        nonlocal task, epoch
        name = "calibrate" if ev.stage == "calibrate" else what  # distill calibrates its converted student first
        desc = f"{name} epoch {ev.epoch}/{ev.epochs}" if ev.epochs > 1 else name
        if task is None:
            task = bar.add_task(desc, total=ev.steps, run="")
        elif (ev.stage, ev.epoch) != epoch:  # a new epoch: a fresh bar, or its clock stops at the first epoch's end
            bar.reset(task, total=ev.steps, description=desc)
        epoch = (ev.stage, ev.epoch)
        if ev.stage != "calibrate":
            clock.last = ev
        bar.update(task, completed=ev.step, total=ev.steps, description=desc, run=clock.run_text(ev))
        if ev.metrics:
            left = clock.eta(ev)
            eta = f", about {duration(left)} left" if left else ""
            bar.console.print(f"[dim]{what}[/] epoch {ev.epoch}/{ev.epochs}  {_fmt(ev.metrics)}  "
                              f"({ev.metrics.get('seconds', 0):.1f}s{eta})")
            clock.summary = ev.metrics

    with bar:
        yield on_event
    if clock.last is not None and clock.last.epochs > 1:
        err.print(f"[dim]{what}[/] done: {clock.last.epochs} epochs in {duration(time.monotonic() - clock.start)}"
                  + (f"  {_fmt(clock.summary)}" if clock.summary else ""))


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """What a stage warns about (a ``StageWarning``), as ``enofctl: warning: ...`` lines on stderr; other
    warnings as Python shows them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StageWarning)
        yield
    for w in caught:
        if not issubclass(w.category, StageWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        elif MAIN_RANK:
            print(f"enofctl: warning: {w.message}", file=sys.stderr)


def emit(result: BaseModel | dict, as_json: bool, text: str | None = None) -> None:
    """``--json``: one JSON object on stdout; otherwise ``text`` (e.g. the artifact path)."""
    if not MAIN_RANK:
        return
    if as_json:
        data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        print(json.dumps(data))
    elif text is not None:
        print(text)  # verbatim: rich would read "[...]" in a path as markup and drop it
