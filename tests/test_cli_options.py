"""The command line's options: one declaration per option (same name, help and default in every command), the
defaults those of the config models, option values honoured or refused (never silently replaced), and the
error map's ``ENOFCTL_DEBUG`` traceback. Nothing here trains more than one tiny teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from clihelp import assert_one_error_line, ok, run

import enofctl.cli
from enofctl import artifacts
from enofctl.cli import options as o
from enofctl.schema import ActSpec, NeuronSpec
from enofctl.stages import (
    CQConvertConfig,
    DistillConfig,
    EvalConfig,
    FetchConfig,
    SurrogateConvertConfig,
    TeacherConfig,
)
from enofctl.stages.ablate import AblateConfig
from enofctl.stages.export import ExportConfig
from enofctl.surrogates import SURROGATES

NEURON_OPTIONS = ["decay", "v_th", "reset", "surrogate", "surrogate_alpha", "v_init"]
RECIPE_OPTIONS = ["epochs", "batch_size", "lr", "optimizer", "weight_decay", "warmup_epochs", "augment",
                  "autoaugment", "cutout", "val_fraction", "amp", "seed", "device", "limit_train", "limit_test",
                  "workers"]
TINY = ("--dataset", "synthetic", "--width", "0.125", "--epochs", "1", "--limit-train", "64", "--quiet")


def params(*path: str) -> dict:
    """The click parameters of ``enofctl PATH`` by name."""
    command = typer.main.get_command(enofctl.cli.app)
    for name in path:
        command = command.commands[name]
    return {p.name: p for p in command.params}


def declaration(p) -> tuple:
    default = getattr(p.default, "value", p.default)
    return tuple(p.opts), tuple(p.secondary_opts), p.help, default


def test_shared_options_are_declared_once() -> None:
    neuron = {c: params(c) for c in ("convert", "distill", "ablate")}
    for name in NEURON_OPTIONS:
        assert len({declaration(neuron[c][name]) for c in neuron}) == 1, name
    train, distill = params("teacher", "train"), params("distill")
    for name in RECIPE_OPTIONS:
        assert declaration(train[name]) == declaration(distill[name]), name


@pytest.mark.parametrize("path,configs", [
    (("teacher", "train"), [TeacherConfig, ActSpec]),
    (("teacher", "fetch"), [FetchConfig]),
    (("convert",), [SurrogateConvertConfig, CQConvertConfig, NeuronSpec]),
    (("distill",), [DistillConfig, NeuronSpec]),
    (("ablate",), [AblateConfig, DistillConfig, NeuronSpec]),
    (("eval",), [EvalConfig]),
    (("export",), [ExportConfig]),
])
def test_defaults_are_the_config_defaults(path: tuple[str, ...], configs: list) -> None:
    checked = 0
    for name, p in params(*path).items():
        field = {"surrogate_alpha": "alpha", "act": "kind"}.get(name, name)
        config = next((c for c in configs if field in c.model_fields), None)
        if config is None or config.model_fields[field].is_required():
            continue
        if name == "calibrate":  # None: the stage's (or --method's) own default; --no-calibrate = 0
            assert p.default is None
            continue
        want = getattr(o.defaults(config), field)
        got = getattr(p.default, "value", p.default)
        if isinstance(want, list):
            want = o.int_list(want)
        assert got == want, f"{' '.join(path)} --{name}: {got!r} != {config.__name__}.{field} = {want!r}"
        checked += 1
    assert checked >= 3


def test_choices_mirror_the_library() -> None:
    assert [s.value for s in o.Surrogate] == list(SURROGATES)
    assert [r.value for r in o.Reset] == ["hard", "soft"]
    assert [a.value for a in o.Act] == ["relu", "clamp", "cq", "qcfs"]
    assert [g.value for g in o.Grid] == ["enof", "activity", "both"]


@pytest.mark.parametrize("command", [
    ("teacher", "train", *TINY),
    ("distill", "--teacher", "t.safetensors", "--epochs", "1"),
    ("ablate", "--teacher", "t.safetensors", "--epochs", "1"),
])
def test_lr_zero_is_refused_not_replaced(tmp_path: Path, command: tuple[str, ...]) -> None:
    out = tmp_path / "out"
    assert_one_error_line(*run(*command, "--lr", "0", "--out", out), 2, "--lr", "greater than 0")
    assert not out.exists()


@pytest.mark.parametrize("args,needle", [
    (("--v-th", "0"), "--v-th"),
    (("--surrogate-alpha", "0"), "--surrogate-alpha"),
    (("--T", "0"), "--T"),
])
def test_values_a_config_refuses_name_their_option(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    out = tmp_path / "s.safetensors"
    assert_one_error_line(*run("distill", "--teacher", "t.safetensors", *args, "--out", out), 2, needle)


def test_small_lr_reaches_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    ok("teacher", "train", *TINY, "--lr", "0.001", "--out", out)
    assert artifacts.load(out).manifest.config["lr"] == 0.001


@pytest.mark.parametrize("args,code", [
    (("convert", "missing.safetensors", "--out", "s.safetensors"), 2),  # a library error
    (("distill", "--teacher", "t.safetensors", "--lr", "0", "--out", "s.safetensors"), 2),  # a config's check
    (("inspect", "{tmp}/text.safetensors"), 1),  # not an artifact
])
def test_enofctl_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           args: tuple[str, ...], code: int) -> None:
    (tmp_path / "text.safetensors").write_text("not safetensors, just some text long enough for a header\n" * 4)
    args = tuple(a.format(tmp=tmp_path) for a in args)
    monkeypatch.delenv("ENOFCTL_DEBUG", raising=False)
    plain = run(*args)
    line = assert_one_error_line(*plain, code)
    monkeypatch.setenv("ENOFCTL_DEBUG", "1")
    got, out, err = run(*args)
    assert got == code and out == ""
    lines = err.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and len(lines) > 3
    assert lines[-1] == line  # the same one-line error, last
    monkeypatch.setenv("ENOFCTL_DEBUG", "0")
    assert run(*args) == plain


def test_grouped_refuses_an_option_declared_twice() -> None:
    def command(decay: o.Decay = 0.5, *, neuron: o.Neuron) -> None: ...

    with pytest.raises(ValueError, match="decay"):
        o.grouped(command)
