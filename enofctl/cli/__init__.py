"""The `enofctl` command line: parses options, shows progress on stderr, prints results on stdout, and maps
errors to one line and an exit code (0 ok, 1 runtime failure, 2 usage, 130 interrupted)."""

from __future__ import annotations

import sys

import click
import typer
from pydantic import ValidationError

from enofctl.errors import EnofError

try:  # typer >= 0.2x vendors click as typer._click and raises its own exception classes, not click's
    from typer._click import exceptions as _tx

    _NoArgsIsHelp = (click.exceptions.NoArgsIsHelpError, _tx.NoArgsIsHelpError)
    _Usage = (click.UsageError, _tx.UsageError)
    _Exit = (click.exceptions.Exit, typer.Exit)
    _Abort = (click.exceptions.Abort, typer.Abort, KeyboardInterrupt)
except ImportError:  # older typer: click's classes
    _NoArgsIsHelp = (click.exceptions.NoArgsIsHelpError,)
    _Usage = (click.UsageError,)
    _Exit = (click.exceptions.Exit,)
    _Abort = (click.exceptions.Abort, KeyboardInterrupt)

app = typer.Typer(
    name="enofctl",
    help="Turn a trained ANN into an accurate, low-activity spiking neural network.\n\n"
    "Pipeline: teacher train|fetch -> convert -> distill -> eval. Every stage reads and writes one "
    ".safetensors artifact with a validated manifest.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from enofctl.cli import ablation, evaluate, info, student, teacher

    app.add_typer(teacher.app, name="teacher")
    student.register(app)
    evaluate.register(app)
    ablation.register(app)
    info.register(app)


_register()


def _fail(message: str, code: int) -> None:
    message = " ".join(str(message).split())  # exactly one line
    print(f"enofctl: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="enofctl")
        if rv == 130:  # typer turns Ctrl-C into a return code when not standalone
            print("enofctl: interrupted (a checkpoint is kept; continue with --resume)", file=sys.stderr)
        sys.exit(rv if isinstance(rv, int) else 0)
    except EnofError as e:
        _fail(str(e), e.exit_code)
    except _NoArgsIsHelp:  # typer has printed the help already
        sys.exit(2)
    except _Usage as e:
        cmd = f" ({e.ctx.command_path} --help)" if e.ctx else ""
        _fail(f"{e.format_message()}{cmd}", 2)
    except ValidationError as e:  # a config built from options that no option check caught
        first = e.errors()[0]
        _fail(f"invalid option {'.'.join(map(str, first['loc']))}: {first['msg']}", 2)
    except _Exit as e:
        sys.exit(e.exit_code)
    except _Abort:
        print("enofctl: interrupted", file=sys.stderr)
        sys.exit(130)
    except MemoryError:
        _fail("out of memory; lower --batch-size or --T", 1)
    except OSError as e:
        _fail(f"{e.strerror or e}: {e.filename or ''}", 1)
