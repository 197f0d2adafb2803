"""What answers without torch: `--version`, every `--help` and a usage error never import torch, timm or
torchvision (seconds), because the CLI reads its options from `enofctl.config` and imports a stage only when
its command runs. Each case runs the real entry point in a fresh interpreter and reports what it imported."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "timm", "torchvision")

# each ARGS of a JSON list run through `enofctl.cli.main`, in order, in one fresh interpreter; printed: each run's
# exit code, stdout and the heavy modules imported so far (so the first run that imports torch is named)
WRAPPER = f"""
import contextlib, io, json, sys
import enofctl.cli
report = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            enofctl.cli.main(argv)
        except SystemExit as e:
            code = e.code
    report.append({{"code": code, "out": out.getvalue(), "heavy": [m for m in {HEAVY!r} if m in sys.modules]}})
print(json.dumps(report))
"""

COMMANDS = [(), ("teacher",), ("teacher", "train"), ("teacher", "fetch"), ("convert",), ("distill",), ("eval",),
            ("ablate",), ("export",), ("inspect",), ("datasets",)]
USAGE_ERRORS = [("distill", "--T", "0"), ("convert", "t.safetensors", "--bogus"), ("teacher", "train", "--epochs", "0"),
                ("no-such-command",)]


def enofctl_runs(*argvs: tuple[str, ...]) -> list[dict]:
    """Run ``enofctl ARGV`` for each ARGV, in order, in one fresh interpreter: each one's code, out and heavy."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "120"}
    p = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(argvs)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def answers() -> dict[tuple[str, ...], dict]:
    """What `--version`, every command's `--help` and the usage errors did, run one after the other."""
    argvs = [("--version",), *[(*c, "--help") for c in COMMANDS], *USAGE_ERRORS]
    return dict(zip(argvs, enofctl_runs(*argvs), strict=True))


def test_version_names_torch_and_timm_without_importing_them(answers: dict) -> None:
    import timm
    import torch

    from enofctl import __version__

    run = answers["--version",]
    assert (run["code"], run["heavy"]) == (0, [])
    assert run["out"].strip() == f"enofctl {__version__} (torch {torch.__version__}, timm {timm.__version__})"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "enofctl")
def test_help_imports_no_torch(answers: dict, command: tuple[str, ...]) -> None:
    run = answers[(*command, "--help")]
    assert (run["code"], run["heavy"]) == (0, [])
    assert "Usage: enofctl" in run["out"]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_usage_error_imports_no_torch(answers: dict, args: tuple[str, ...]) -> None:
    run = answers[args]
    assert (run["code"], run["heavy"], run["out"]) == (2, [], "")


def test_the_entry_point_and_a_command_that_runs() -> None:
    """`python -m enofctl` (signals installed first) answers `--version` without torch too, and the check can see
    torch: a command that computes imports it (here `eval` of a missing file, after the options are checked)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "enofctl", "--version"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("enofctl ")
    imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "enofctl.cli" in imported and not imported & set(HEAVY)
    [run] = enofctl_runs(("eval", str(ROOT / "no-such-artifact.safetensors")))
    assert run["code"] != 0 and "torch" in run["heavy"]


def test_the_torch_free_copies_agree_with_the_library() -> None:
    """Values `enofctl.config` repeats so the CLI reads them without torch: the same as the modules they mirror."""
    from enofctl import config, data, ops, stages
    from enofctl.config.evaluate import E_AC_PJ, E_MAC_PJ
    from enofctl.config.export import DEFAULT_DT
    from enofctl.models import base
    from enofctl.schema.surrogates import SURROGATE_ALPHAS
    from enofctl.spiking import nir_export
    from enofctl.surrogates import SURROGATES

    ablate, distill, export = (importlib.import_module(f"enofctl.stages.{m}") for m in ("ablate", "distill", "export"))

    assert (E_MAC_PJ, E_AC_PJ) == (ops.E_MAC_PJ, ops.E_AC_PJ)
    assert DEFAULT_DT == nir_export.DEFAULT_DT
    assert config.default_workers() == data.default_workers()
    assert base.MAX_WIDTH == config.MAX_WIDTH
    assert {name: alpha for name, (_, alpha) in SURROGATES.items()} == SURROGATE_ALPHAS
    # the stages re-export the configs themselves, not copies
    assert stages.TrainConfig is config.TrainConfig and stages.DistillConfig is config.DistillConfig
    assert stages.EvalConfig is config.EvalConfig and stages.TeacherConfig is config.TeacherConfig
    assert stages.SurrogateConvertConfig is config.SurrogateConvertConfig
    assert ablate.AblateConfig is config.AblateConfig and export.ExportConfig is config.ExportConfig
    assert distill.RECIPES is config.RECIPES


def test_inspect_reads_safetensors_and_pydantic_only(tmp_path: Path) -> None:
    """`inspect` validates the header, the manifest and the tensors' bytes without torch, and shows what
    `inspect --deep` (the model built, torch loaded) shows; a flipped tensor byte is caught without torch too."""
    student = ROOT / "tests" / "data" / "v3_student_channel.safetensors"
    raw = bytearray(student.read_bytes())
    raw[-3] ^= 0xFF  # the last tensor's bytes
    (tmp_path / "flipped.safetensors").write_bytes(bytes(raw))
    flipped = str(tmp_path / "flipped.safetensors")
    light, text, bad, deep = enofctl_runs(("inspect", str(student), "--json"), ("inspect", str(student)),
                                          ("inspect", flipped, "--quiet"),
                                          ("inspect", str(student), "--deep", "--json"))
    assert (light["code"], light["heavy"], text["code"], text["heavy"]) == (0, [], 0, [])
    assert (bad["code"], bad["heavy"]) == (1, [])
    assert deep["code"] == 0 and "torch" in deep["heavy"]
    assert json.loads(light["out"]) == json.loads(deep["out"])
    assert "sha256" in text["out"] and "student" in text["out"]
