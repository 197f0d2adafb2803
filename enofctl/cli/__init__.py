"""The `enofctl` command line: parses options, shows progress on stderr, prints results on stdout, and maps
errors to one line and an exit code (0 ok, 1 runtime failure, 2 usage, 3 gate failed, 130 Ctrl-C, 143 SIGTERM).
``ENOFCTL_DEBUG=1`` prints the traceback behind an error line too."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from enofctl import signals
from enofctl.cli.options import PipelineGroup
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


def main(argv: list[str] | None = None) -> None:
    """Run one command; the one place where every failure becomes one line on stderr and an exit code."""
    signals.reset()
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="enofctl")
        if rv == 130:  # newer typer turns Ctrl-C (and SIGTERM, a KeyboardInterrupt) into a return code
            signals.exit_interrupted()
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
    except (typer.Abort, KeyboardInterrupt) as e:  # older typer: click's Abort
        signals.exit_interrupted(e)
    except MemoryError:
        _fail("out of memory; lower --batch-size or --T", 1)
    except OSError as e:
        _fail(f"{e.strerror or e}: {e.filename or ''}", 1)
    except RecursionError:
        _fail("input nested too deeply to process", 1)
    except Exception as e:  # a failure no check foresaw: still one line (the traceback with ENOFCTL_DEBUG=1)
        _fail(f"unexpected {type(e).__name__}: {first_line(e)} (ENOFCTL_DEBUG=1 shows the traceback; please "
              "report it)", 1)
