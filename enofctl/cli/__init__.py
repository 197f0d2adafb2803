"""The `enofctl` command line: parses options, shows progress on stderr, prints results on stdout, and maps
errors to one line and an exit code (0 ok, 1 runtime failure, 2 usage, 3 gate failed, 130 interrupted).
``ENOFCTL_DEBUG=1`` prints the traceback behind an error line too."""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn

import typer
from pydantic import ValidationError

from enofctl.errors import EnofError


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
)


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


# pydantic fields whose option is not simply --field-name; nested configs whose fields are options themselves
_OPTION_OF_FIELD = {"alpha": "--surrogate-alpha", "act_reg_weights": "--act-reg-weight", "model_kwargs": "--model-arg"}
_NESTED = {"neuron", "train", "surrogate", "cq"}  # nested configs, and the tags of a union (convert's --method)


def _option(loc: tuple) -> str:
    """The option behind a validation error's location, e.g. ("neuron", "v_th") -> --v-th."""
    names = [str(x) for x in loc if isinstance(x, str)]
    while len(names) > 1 and names[0] in _NESTED:
        names = names[1:]
    if not names:
        return "?"
    return _OPTION_OF_FIELD.get(names[0], "--" + names[0].replace("_", "-"))


def _click_error(e: Exception) -> NoReturn:
    if type(e).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
        sys.exit(2)
    ctx = getattr(e, "ctx", None)
    hint = f" ({ctx.command_path} --help)" if ctx is not None else ""
    _fail(f"{e.format_message()}{hint}", e.exit_code)


INTERRUPTED = "enofctl: interrupted (a checkpoint is kept; continue with --resume)"


def main(argv: list[str] | None = None) -> None:
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="enofctl")
        if rv == 130:  # newer typer turns Ctrl-C into a return code when not standalone
            print(INTERRUPTED, file=sys.stderr)
        sys.exit(rv if isinstance(rv, int) else 0)
    except EnofError as e:
        _fail(str(e), e.exit_code)
    except _ClickError as e:
        _click_error(e)
    except ValidationError as e:  # a config built from options that no option check caught
        first = e.errors()[0]
        _fail(f"invalid option {_option(first['loc'])}: {first['msg']}", 2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):  # older typer: click's Abort
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except MemoryError:
        _fail("out of memory; lower --batch-size or --T", 1)
    except OSError as e:
        _fail(f"{e.strerror or e}: {e.filename or ''}", 1)
