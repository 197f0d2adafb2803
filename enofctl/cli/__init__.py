"""The `enofctl` command line: parses options, shows progress on stderr, prints results on stdout, and maps
errors to one line and an exit code (0 ok, 1 runtime failure, 2 usage, 3 gate failed, 130 Ctrl-C, 143 SIGTERM).
``ENOFCTL_DEBUG=1`` prints the traceback behind an error line too."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from enofctl import signals
from enofctl.cli.options import PipelineGroup
from enofctl.config.flags import flag_of
from enofctl.errors import EnofError, first_line


def _base_named(cls: type, name: str) -> type:
    return next(c for c in cls.__mro__ if c.__name__ == name)


# Typer raises click's exception classes (older typer) or those of its own copy of click (newer); reach either
# through typer's public names rather than a private module.
_ClickError = _base_named(typer.BadParameter, "ClickException")  # usage errors (exit 2) and the like

app = typer.Typer(
    name="enofctl",
    help="Turn a trained ANN into an accurate, low-activity spiking neural network.\n\n"
    "Pipeline: teacher train|fetch -> convert -> distill -> eval. Every stage reads and writes one "
    ".safetensors artifact with a validated manifest.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=PipelineGroup,
)


def _version_of(package: str) -> str:
    """``package.__version__`` without importing the package (torch takes seconds): the literal in its
    ``version.py`` (torch's carries the build's tag, e.g. +cu130, which its distribution's metadata may not),
    else the installed distribution's version."""
    import ast
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        try:
            tree = ast.parse(Path(folder, "version.py").read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                return node.value.value
    return importlib.metadata.version(package)


def _print_version(value: bool) -> None:
    if value:
        from enofctl import __version__

        print(f"enofctl {__version__} (torch {_version_of('torch')}, timm {_version_of('timm')})")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                help="Print the versions of enofctl, torch and timm, and exit.")
                             ] = False) -> None:
    pass


def _register() -> None:
    from enofctl.cli import ablation, evaluate, export, info, student, teacher

    app.add_typer(teacher.app, name="teacher")
    student.register(app)
    evaluate.register(app)
    ablation.register(app)
    export.register(app)
    info.register(app)


_register()


def _fail(message: str, code: int) -> NoReturn:
    """One ``enofctl: error:`` line on stderr (after the traceback under ``ENOFCTL_DEBUG=1``), then exit."""
    if os.environ.get("ENOFCTL_DEBUG", "") not in ("", "0"):
        traceback.print_exc(file=sys.stderr)
    message = " ".join(str(message).split())  # exactly one line
    print(f"enofctl: error: {message}", file=sys.stderr)
    sys.exit(code)


def _click_error(e: Exception) -> NoReturn:
    if type(e).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
        sys.exit(2)
    ctx = getattr(e, "ctx", None)
    hint = f" ({ctx.command_path} --help)" if ctx is not None else ""
    _fail(f"{e.format_message()}{hint}", e.exit_code)


def _invalid_option(e: ValidationError) -> str:
    first = e.errors()[0]
    return f"invalid option {flag_of(first['loc'])}: {first['msg']}"


# every failure that is not a usage error of click's or an interrupt: its line and exit code, first match wins
_ERRORS: tuple[tuple[type[BaseException], Callable[[Any], tuple[str, int]]], ...] = (
    (EnofError, lambda e: (str(e), e.exit_code)),
    (ValidationError, lambda e: (_invalid_option(e), 2)),  # a config built from options no option check caught
    (MemoryError, lambda e: ("out of memory; lower --batch-size or --T", 1)),
    (OSError, lambda e: (f"{e.strerror or e}: {e.filename or ''}", 1)),
    (RecursionError, lambda e: ("input nested too deeply to process", 1)),
    (Exception, lambda e: (f"unexpected {type(e).__name__}: {first_line(e)} (ENOFCTL_DEBUG=1 shows the traceback; "
                           "please report it)", 1)),  # a failure no check foresaw: still one line
)


def main(argv: list[str] | None = None) -> None:
    """Run one command; the one place where every failure becomes one line on stderr and an exit code."""
    signals.reset()
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="enofctl")
        if rv == 130:  # newer typer turns Ctrl-C (and SIGTERM, a KeyboardInterrupt) into a return code
            signals.exit_interrupted()
        sys.exit(rv if isinstance(rv, int) else 0)
    except _ClickError as e:
        _click_error(e)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt) as e:  # older typer: click's Abort
        signals.exit_interrupted(e)
    except Exception as e:
        _fail(*next(describe(e) for kind, describe in _ERRORS if isinstance(e, kind)))
