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


@contextlib.contextmanager
def progress(quiet: bool, what: str) -> Iterator[ProgressFn | None]:
    """A callback for the stages' progress events. At a terminal: a bar per epoch (restarted each epoch, with
    the time left in the epoch and in the whole run). Into a log: a line per calibrated layer and at least one
    every ``progress_interval()`` seconds (`_Heartbeat`). Both: one line for the epoch-0 evaluation, one per
    finished epoch and a closing summary line."""
    if quiet or not MAIN_RANK:
        yield None
        return
    name_of = escape(what)
    live = err.is_terminal
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[run]}"),
                   console=err, transient=True,
                   disable=not live)  # no live bar into pipes/logs: it would leave blank lines
    beat = None if live else _Heartbeat(what, progress_interval())
    task, epoch, clock, layer = None, None, RunClock(), {"t": time.monotonic(), "done": 0}

    def line(text: str) -> None:
        if beat is not None:
            beat.say(Text.from_markup(text).plain)
        else:
            bar.console.print(text)

    def on_calibrate(ev: ProgressEvent) -> None:
        if ev.step == 0:  # the first layer begins (data read, the plain copy's agreement measured)
            layer["t"] = time.monotonic()
        if ev.step > layer["done"] and beat is not None:
            now = time.monotonic()
            line(f"calibrate layer {ev.step}/{ev.steps}" + (" and the readout" if ev.step == ev.steps else "")
                 + f" done ({now - layer['t']:.1f}s)")
            layer["t"] = now
        layer["done"] = ev.step

    def on_event(ev: ProgressEvent) -> None:
        nonlocal task, epoch
        if beat is not None:
            beat.status = _status(ev)
        if ev.before:  # the epoch-0 evaluation, before the first step: not part of the run's estimate
            line(f"[dim]{name_of}[/] epoch 0/{ev.epochs} (before training)  {_fmt(ev.before)}  "
                 f"({ev.before.get('seconds', 0):.1f}s)")
            return
        # distill calibrates (and reconstructs) its converted student first
        name = ev.stage if ev.stage in ("calibrate", "reconstruct") else what
        desc = f"{name} epoch {ev.epoch}/{ev.epochs}" if ev.epochs > 1 else name
        if task is None:
            task = bar.add_task(escape(desc), total=ev.steps, run="")
        elif (ev.stage, ev.epoch) != epoch:  # a new epoch: a fresh bar, or its clock stops at the first epoch's end
            bar.reset(task, total=ev.steps, description=escape(desc))
        epoch = (ev.stage, ev.epoch)
        if ev.stage == "calibrate":
            on_calibrate(ev)
        elif ev.stage == "reconstruct":
            if ev.step == ev.steps:
                line(f"reconstruct: {ev.steps} steps done")
        elif ev.stage != "eval":
            clock.step(ev)
        bar.update(task, completed=ev.step, total=ev.steps, description=escape(desc), run=clock.run_text(ev))
        if ev.metrics:
            left = clock.eta(ev)
            eta = f", about {duration(left)} left" if left else ""
            line(f"[dim]{name_of}[/] epoch {ev.epoch}/{ev.epochs}  {_fmt(ev.metrics)}  "
                 f"({ev.metrics.get('seconds', 0):.1f}s{eta})")
            clock.summary = ev.metrics

    with bar, (beat or contextlib.nullcontext()):
        yield on_event
    if clock.last is not None:
        n = clock.last.epochs
        line(f"[dim]{name_of}[/] done: {n} epoch{'s' if n != 1 else ''} in {duration(clock.spent())}"
             + (f"  {_fmt(clock.summary)}" if clock.summary else ""))


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
