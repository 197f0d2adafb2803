"""The `enofctl` command line: parses options, shows progress on stderr, prints results on stdout, and maps
errors to one line and an exit code (0 ok, 1 runtime failure, 2 usage, 130 interrupted)."""

from __future__ import annotations

import sys

import click
import typer
from pydantic import ValidationError

from enofctl.errors import EnofError

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
    from enofctl.cli import evaluate, info, student, teacher

    app.add_typer(teacher.app, name="teacher")
    student.register(app)
    evaluate.register(app)
    info.register(app)


_register()


def _fail(message: str, code: int) -> None:
    message = " ".join(str(message).split())  # exactly one line
    print(f"enofctl: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="enofctl")
        sys.exit(rv if isinstance(rv, int) else 0)
    except EnofError as e:
        _fail(str(e), e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help(), err=True)
        sys.exit(2)
    except click.UsageError as e:
        cmd = f" ({e.ctx.command_path} --help)" if e.ctx else ""
        _fail(f"{e.format_message()}{cmd}", 2)
    except ValidationError as e:  # a config built from options that no option check caught
        first = e.errors()[0]
        _fail(f"invalid option {'.'.join(map(str, first['loc']))}: {first['msg']}", 2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("enofctl: interrupted", file=sys.stderr)
        sys.exit(130)
    except MemoryError:
        _fail("out of memory; lower --batch-size or --T", 1)
    except OSError as e:
        _fail(f"{e.strerror or e}: {e.filename or ''}", 1)
