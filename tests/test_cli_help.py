"""What a new user reads first: `--help` (defaults and choices shown, no value type on flags, pipeline order),
`--version`, one option name per concept, and the checks `teacher train` makes before it trains."""

from __future__ import annotations

import re

import pytest
from clihelp import assert_one_error_line, ok, run
from typer.main import get_command

import enofctl.cli
from enofctl import __version__
from enofctl.data import default_workers


def _walk(cmd, path: tuple[str, ...] = ()):
    """Every command the Typer app registers, as (path, click command), groups included."""
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


ALL = list(_walk(get_command(enofctl.cli.app)))
COMMANDS = [path for path, cmd in ALL if path and not getattr(cmd, "commands", None)]
# options of another command a help text may name: "a --act cq teacher" (teacher train's)
CROSS_REFERENCES = {"--act"}


def help_of(*path: str) -> str:
    code, out, err = run(*path, "--help")
    assert code == 0, err
    return out


def test_version() -> None:
    assert ok("--version").startswith(f"enofctl {__version__} (torch ")


def test_teacher_is_listed_first() -> None:
    out = help_of()
    listed = [m.group(1) for m in re.finditer(r"^\W*(teacher|convert|distill|eval|ablate|inspect|datasets)\s",
                                             out, re.M)]
    assert listed[:4] == ["teacher", "convert", "distill", "eval"], listed


@pytest.mark.parametrize("path, cmd", ALL, ids=[" ".join(p) or "enofctl" for p, _ in ALL])
def test_every_help_renders_true(path: tuple[str, ...], cmd, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command and group the app registers (walked, not listed): help renders, no ``<bool>`` type on a
    flag, no stray period, no ``[x>=0.0]`` range beside a "(> 0)", and no option the command does not have."""
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: nothing cut mid-name
    out = help_of(*path)
    assert "Usage: enofctl" in out
    assert "<bool>" not in out
    assert not re.search(r"\s\.\s*(│|$)", out, re.M), out
    assert not re.search(r"x>=0(\.0)?\].*\(> 0\)", out), out
    if getattr(cmd, "commands", None):
        return
    own = {name for p in cmd.params for name in (*p.opts, *p.secondary_opts)} | {"--help"}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", out))
    assert named - own - CROSS_REFERENCES == set(), out


def test_the_walk_finds_every_command() -> None:
    assert {("teacher", "train"), ("teacher", "fetch"), ("convert",), ("distill",), ("eval",), ("ablate",),
            ("inspect",), ("datasets",), ("export",)} <= set(COMMANDS)


@pytest.mark.parametrize("path,option,shown", [
    (("teacher", "train"), "--model", "resnet20"),
    (("teacher", "train"), "--epochs", "30"),
    (("teacher", "train"), "--lr", "0.05"),
    (("teacher", "train"), "--width", "1.0"),
    (("teacher", "train"), "--levels", "--act cq/qcfs"),
    (("teacher", "train"), "--for-snn", "for-snn"),
    (("distill",), "--T", "the student's, or 4"),
    (("distill",), "--student", "convert the teacher"),
    (("distill",), "--surrogate-alpha", "the surrogate's own"),
    (("distill",), "--act-reg-kind", "l1|l2"),
    (("convert",), "--calibrate", "8 for surrogate"),
    (("eval",), "--T", "each student's own T"),
    (("eval",), "--limit-test", "all"),
    (("teacher", "train"), "--workers", f"{default_workers()} here: the cores"),
    (("distill",), "--workers", f"{default_workers()} here: the cores"),
    (("eval",), "--workers", f"{default_workers()} here: the cores"),
    (("ablate",), "--workers", f"{default_workers()} here: the cores"),
])
def test_help_shows_defaults_and_choices(monkeypatch: pytest.MonkeyPatch, path, option: str, shown: str) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line per option
    out = help_of(*path)
    line = next((x for x in out.splitlines() if re.search(rf"{re.escape(option)}(\s|$)", x)), None)
    assert line is not None, out
    assert shown in line, line
    if "default" not in shown and option not in ("--act-reg-kind",):
        assert "default" in line, line


def test_one_name_for_the_test_limit(pipe_free_teacher) -> None:
    """eval says --limit-test like teacher train and distill; --limit still works, hidden from the help."""
    assert "--limit-test" in help_of("eval") and "--limit " not in help_of("eval")
    for flag in ("--limit-test", "--limit"):
        out = ok("eval", pipe_free_teacher, flag, "16", "--json", "--speed-batches", "0")
        assert '"samples": 16' in out


def test_distill_can_download() -> None:
    assert "--download" in help_of("distill")


@pytest.fixture(scope="module")
def pipe_free_teacher(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("t") / "t.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "1", "--limit-train", "32",
       "--limit-test", "32", "--quiet", "--out", out)
    return str(out)


# ----------------------------------------------------------------------------------------------------------
# teacher train's checks before training


def test_activation_that_cannot_spike_is_refused_before_training(tmp_path) -> None:
    out = tmp_path / "t.safetensors"
    line = assert_one_error_line(*run("teacher", "train", "--dataset", "synthetic", "--model", "efficientnet_b0",
                                      "--epochs", "1", "--out", out), 2, "spiking student", "--no-check")
    assert "SiLU" in line
    assert not out.exists()


def test_clamped_resnet_is_refused_and_vgg7_hinted(tmp_path) -> None:
    line = assert_one_error_line(*run("teacher", "train", "--dataset", "synthetic", "--act", "cq", "--levels", "4",
                                      "--out", tmp_path / "t.safetensors"), 2, "residual", "vgg7", "--no-check")
    assert "qcfs" in line


def test_model_too_large_for_the_images_gets_a_hint(tmp_path) -> None:
    assert_one_error_line(*run("teacher", "train", "--dataset", "digits", "--model", "vgg11_bn",
                               "--out", tmp_path / "t.safetensors"), 2, "cannot run", "resnet20", "vgg7")


def test_no_check_trains_what_the_check_refuses(tmp_path) -> None:
    out = tmp_path / "t.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", "--act", "cq", "--levels", "4", "--width", "0.125",
       "--epochs", "1", "--limit-train", "32", "--limit-test", "16", "--no-check", "--quiet", "--out", out)
    assert out.is_file()
