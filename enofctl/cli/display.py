"""Progress on stderr (rich) and results on stdout."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from enofctl.stages.common import ProgressEvent as Event
from enofctl.stages.common import ProgressFn

err = Console(stderr=True)
MAIN_RANK = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 talks
out = Console(soft_wrap=True, highlight=False)


def _fmt(metrics: dict) -> str:
    keep = {k: v for k, v in metrics.items() if k not in ("epoch", "seconds", "train_seconds", "test_top5", "val_top5")}
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in keep.items())


@contextlib.contextmanager
def progress(quiet: bool, what: str) -> Iterator[ProgressFn | None]:
    """A callback for the stages' progress events: a bar per epoch and one log line per finished epoch."""
    if quiet or not MAIN_RANK:
        yield None
        return
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True,
                   disable=not err.is_terminal)  # no live bar into pipes/logs: it would leave blank lines
    task = None

    def on_event(ev: Event) -> None:
        nonlocal task
        name = "calibrate" if ev.stage == "calibrate" else what  # distill calibrates its converted student first
        desc = f"{name} epoch {ev.epoch}/{ev.epochs}" if ev.epochs > 1 else name
        if task is None:
            task = bar.add_task(desc, total=ev.steps)
        bar.update(task, completed=ev.step, total=ev.steps, description=desc)
        if ev.metrics:
            bar.console.print(f"[dim]{what}[/] epoch {ev.epoch}/{ev.epochs}  {_fmt(ev.metrics)}  "
                              f"({ev.metrics.get('seconds', 0):.1f}s)")

    with bar:
        yield on_event


def emit(result: BaseModel | dict, as_json: bool, text: str | None = None) -> None:
    """``--json``: one JSON object on stdout; otherwise ``text`` (e.g. the artifact path)."""
    if not MAIN_RANK:
        return
    if as_json:
        data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        print(json.dumps(data))
    elif text is not None:
        print(text)  # verbatim: rich would read "[...]" in a path as markup and drop it
