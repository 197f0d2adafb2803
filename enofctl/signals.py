"""SIGTERM handled like Ctrl-C: both become an exception (`Interrupted` is a KeyboardInterrupt), so every
cleanup runs (the atomic write removes its temporary file, the last checkpoint stays), and the command ends
with one line on stderr and exit 128 + the signal (130 for Ctrl-C, 143 for SIGTERM). Imports nothing heavy:
the entry point installs it before torch is imported."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import NoReturn

from enofctl.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)
MESSAGES = {signal.SIGINT: "enofctl: interrupted", signal.SIGTERM: "enofctl: terminated by SIGTERM"}
received: int | None = None  # the first signal received by the entry point, even if a library swallowed it
# the latest signal raised as `Interrupted` since the command started (typer turns an interrupt into a bare
# return code 130, so the CLI reads the signal from here)
last: int | None = None
# the checkpoint an interrupted command leaves: the CLI command that trains names it (`keeps_checkpoint`)
checkpoint: Path | None = None


_installed = False


def install() -> None:
    """Turn Ctrl-C and SIGTERM into `Interrupted` (a KeyboardInterrupt) in this (main) thread, and remember
    the signal (the entry point does this first)."""
    global _installed
    for signum in HANDLED:
        signal.signal(signum, _raise)
    _installed = True


def _raise(signum: int, frame: object) -> None:
    global received, last
    received = received or signum
    last = signum
    raise Interrupted(signum)


def signal_of(e: BaseException | None) -> int:
    """The signal behind an interrupt: `Interrupted`'s, also when wrapped (typer's Exit(130), click's Abort);
    without an exception, the latest `Interrupted`; else SIGINT."""
    if e is None:
        return last or signal.SIGINT
    while e is not None:
        if isinstance(e, Interrupted):
            return e.signum
        e = e.__cause__ or e.__context__
    return signal.SIGINT


def reset() -> None:
    """Forget an earlier interrupt and checkpoint (a command starts)."""
    global last, checkpoint
    last = checkpoint = None


def keeps_checkpoint(path: Path) -> None:
    """The command under way trains with its checkpoint at ``path`` (``OUT.ckpt`` of its ``--out``): an
    interrupt's line says whether it is there to ``--resume`` from. Called by the CLI, never by the library."""
    global checkpoint
    checkpoint = path


def _what_is_left() -> str:
    if checkpoint is not None and checkpoint.is_file():
        return f"checkpoint {checkpoint.name} kept; continue with --resume"
    return "no partial file is left"


def exit_interrupted(e: BaseException | None = None, signum: int | None = None) -> NoReturn:
    """Print the one line and exit with 128 + the signal; as the entry point, ignore further interrupts first
    (a second Ctrl-C would print a traceback)."""
    signum = signal_of(e) if signum is None else signum
    if _installed:
        for s in HANDLED:
            signal.signal(s, signal.SIG_IGN)
    print(f"{MESSAGES.get(signum, MESSAGES[signal.SIGINT])} ({_what_is_left()})", file=sys.stderr)
    sys.exit(128 + int(signum))
