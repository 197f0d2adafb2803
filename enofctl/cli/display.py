"""Progress on stderr (rich) and results on stdout."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
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
from rich.text import Text

from enofctl.torchrun import launch

if TYPE_CHECKING:  # the stages import torch: only what a command runs loads them
    from enofctl.stages.progress import ProgressEvent, ProgressFn

err = Console(stderr=True)
err.soft_wrap = not err.is_terminal  # into a log file: one line per message, never wrapped at 80 columns
MAIN_RANK = launch().rank == 0  # under torchrun only rank 0 talks
out = Console(soft_wrap=True, highlight=False)


def _fmt(metrics: dict) -> str:
    keep = {k: v for k, v in metrics.items() if k not in ("epoch", "seconds", "train_seconds", "test_top5", "val_top5",
                                                    "schedule_epochs", "lr")}
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
    """The run-level estimate: the time left from the fraction of training done so far. It starts at the first
    training step, so calibration and the epoch-0 evaluation (reported apart) do not count."""

    start: float | None = None
    done0: float = 0.0  # the fraction done at the first step (a resumed run starts part-way)
    last: ProgressEvent | None = None
    summary: dict = field(default_factory=dict)

    def step(self, ev: ProgressEvent) -> None:
        if self.start is None:
            self.start, self.done0 = time.monotonic(), ev.fraction
        self.last = ev

    def spent(self) -> float:
        return 0.0 if self.start is None else time.monotonic() - self.start

    def eta(self, ev: ProgressEvent) -> float | None:
        done = ev.fraction - self.done0
        return self.spent() * (1 - ev.fraction) / done if done > 0 and ev.epochs > 1 else None

    def run_text(self, ev: ProgressEvent) -> str:
        eta = self.eta(ev)
        return "" if eta is None else f"run {duration(self.spent())}, about {duration(eta)} left"


def progress_interval() -> float:
    """Seconds between progress lines into a log (``ENOFCTL_PROGRESS_SECONDS``, default 30)."""
    try:
        value = float(os.environ.get("ENOFCTL_PROGRESS_SECONDS", "30"))
    except ValueError:
        return 30.0
    return value if value > 0 else 30.0


class _Heartbeat:
    """Into a log (stderr not a terminal): a plain line at least every ``interval`` seconds while a stage runs,
    saying where it is (the last event), so a long calibration, epoch or evaluation shows a sign of life."""

    def __init__(self, what: str, interval: float):
        self.what, self.interval = what, interval
        self.status, self.since = "starting", time.monotonic()
        self.last_line = self.since
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="enofctl-progress", daemon=True)

    def say(self, line: str) -> None:
        with self.lock:
            print(line, file=sys.stderr, flush=True)
            self.last_line = time.monotonic()

    def _run(self) -> None:
        while not self.stop.wait(min(self.interval, 1.0)):
            now = time.monotonic()
            if now - self.last_line >= self.interval:
                self.say(f"{self.what}: {self.status} ({duration(now - self.since)} since it began)")

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def _status(ev: ProgressEvent) -> str:
    if ev.stage == "calibrate":
        return f"calibrating layer {min(ev.step + 1, ev.steps)}/{ev.steps}"
    if ev.stage == "reconstruct":
        return f"reconstructing, step {ev.step}/{ev.steps}"
    if ev.stage == "eval":
        return f"evaluating, batch {ev.step}/{ev.steps}"
    if ev.epoch == 0:
        return f"epoch 1/{ev.epochs} starting"
    if ev.step >= ev.steps:
        return f"epoch {ev.epoch}/{ev.epochs}: evaluating"
    return f"epoch {ev.epoch}/{ev.epochs}, step {ev.step}/{ev.steps}"


def bar(*extra: TextColumn, live: bool = True) -> Progress:
    """The one progress bar of every command, on stderr: description, bar, done/total, elapsed and the time
    left, then ``extra`` columns. Not ``live`` (stderr is a pipe or a log): disabled, it would leave blank
    lines."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), *extra, console=err, transient=True,
                    disable=not live)


class _StageView:
    """What `progress` shows of one stage's events: the bar (at a terminal) or the heartbeat's lines (into a
    log), the epoch lines and the run's clock."""

    def __init__(self, what: str, live: bool):
        self.what, self.name_of = what, escape(what)
        self.bar = bar(TextColumn("{task.fields[run]}"), live=live)
        self.beat = None if live else _Heartbeat(what, progress_interval())
        self.task, self.epoch, self.clock = None, None, RunClock()
        self.layer_t, self.layer_done = time.monotonic(), 0

    def line(self, text: str) -> None:
        if self.beat is not None:
            self.beat.say(Text.from_markup(text).plain)
        else:
            self.bar.console.print(text)

    def on_calibrate(self, ev: ProgressEvent) -> None:
        if ev.step == 0:  # the first layer begins (data read, the plain copy's agreement measured)
            self.layer_t = time.monotonic()
        if ev.step > self.layer_done and self.beat is not None:
            now = time.monotonic()
            self.line(f"calibrate layer {ev.step}/{ev.steps}" + (" and the readout" if ev.step == ev.steps else "")
                      + f" done ({now - self.layer_t:.1f}s)")
            self.layer_t = now
        self.layer_done = ev.step

    def _bar_to(self, ev: ProgressEvent) -> None:
        # distill calibrates (and reconstructs) its converted student first
        name = ev.stage if ev.stage in ("calibrate", "reconstruct") else self.what
        desc = escape(f"{name} epoch {ev.epoch}/{ev.epochs}" if ev.epochs > 1 else name)
        if self.task is None:
            self.task = self.bar.add_task(desc, total=ev.steps, run="")
        elif (ev.stage, ev.epoch) != self.epoch:  # a new epoch: a fresh bar, or its clock stops at the first end
            self.bar.reset(self.task, total=ev.steps, description=desc)
        self.epoch = (ev.stage, ev.epoch)
        self.bar.update(self.task, completed=ev.step, total=ev.steps, description=desc,
                        run=self.clock.run_text(ev))

    def __call__(self, ev: ProgressEvent) -> None:
        if self.beat is not None:
            self.beat.status = _status(ev)
        if ev.before:  # the epoch-0 evaluation, before the first step: not part of the run's estimate
            self.line(f"[dim]{self.name_of}[/] epoch 0/{ev.epochs} (before training)  {_fmt(ev.before)}  "
                      f"({ev.before.get('seconds', 0):.1f}s)")
            return
        if ev.stage == "calibrate":
            self.on_calibrate(ev)
        elif ev.stage == "reconstruct":
            if ev.step == ev.steps:
                self.line(f"reconstruct: {ev.steps} steps done")
        elif ev.stage != "eval":
            self.clock.step(ev)
        self._bar_to(ev)
        if ev.metrics:
            left = self.clock.eta(ev)
            eta = f", about {duration(left)} left" if left else ""
            self.line(f"[dim]{self.name_of}[/] epoch {ev.epoch}/{ev.epochs}  {_fmt(ev.metrics)}  "
                      f"({ev.metrics.get('seconds', 0):.1f}s{eta})")
            self.clock.summary = ev.metrics

    def close(self) -> None:
        if self.clock.last is not None:
            n = self.clock.last.epochs
            self.line(f"[dim]{self.name_of}[/] done: {n} epoch{'s' if n != 1 else ''} in "
                      f"{duration(self.clock.spent())}" + (f"  {_fmt(self.clock.summary)}" if self.clock.summary
                                                           else ""))


@contextlib.contextmanager
def progress(quiet: bool, what: str) -> Iterator[ProgressFn | None]:
    """A callback for the stages' progress events. At a terminal: a bar per epoch (restarted each epoch, with
    the time left in the epoch and in the whole run). Into a log: a line per calibrated layer and at least one
    every ``progress_interval()`` seconds (`_Heartbeat`). Both: one line for the epoch-0 evaluation, one per
    finished epoch and a closing summary line."""
    if quiet or not MAIN_RANK:
        yield None
        return
    view = _StageView(what, live=err.is_terminal)
    with view.bar, (view.beat or contextlib.nullcontext()):
        yield view
    view.close()


@contextlib.contextmanager
def cell_progress(quiet: bool, what: str) -> Iterator:
    """`ablate`'s callback ``on_cell(i, n, what, seconds, eta)``: a bar over the cells at a terminal, and a line
    as each cell begins, with the time left."""
    cells = bar(live=not quiet and MAIN_RANK and err.is_terminal)
    task = cells.add_task(what, total=None)

    def on_cell(i: int, n: int, cell: str, seconds: float, eta: float | None) -> None:
        cells.update(task, completed=i, total=n, description=f"cell {min(i + 1, n)}/{n}: {cell}")
        if not quiet and MAIN_RANK and i < n:
            left = f", about {eta / 60:.1f} min left" if eta is not None else ""
            err.print(f"[dim]{what}[/] cell {i + 1}/{n}: {cell}{left}")

    with cells:
        yield on_cell


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """What a stage warns about (a ``StageWarning``), as ``enofctl: warning: ...`` lines on stderr; other
    warnings as Python shows them."""
    from enofctl.stages.progress import StageWarning

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
