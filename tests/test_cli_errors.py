"""The `enofctl` command line given bad input: every failure is one error line, the right exit code and
nothing written (no artifact, no folder, no temporary file, an existing --out kept)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from clihelp import QUICK, TINY, Pipeline, assert_one_error_line, listing, manifest, ok, run, sha256

from enofctl import artifacts

# ----------------------------------------------------------------------------------------------------------
# bad inputs: one error line, the right exit code, nothing written


def _not_safetensors(d: Path, pipe: Pipeline) -> Path:
    p = d / "junk.safetensors"
    p.write_text("this is not a safetensors file, just some text long enough to have a header\n" * 4)
    return p


def _truncated(d: Path, pipe: Pipeline) -> Path:
    p = d / "trunc.safetensors"
    data = pipe.teacher.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _one_byte_short(d: Path, pipe: Pipeline) -> Path:
    p = d / "short.safetensors"
    data = pipe.teacher.read_bytes()
    p.write_bytes(data[:-1])
    return p


def _newer_schema(d: Path, pipe: Pipeline) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(pipe.teacher), "pt") as f:
        meta = f.metadata()
    raw = json.loads(meta[artifacts.METADATA_KEY])
    raw["schema_version"] = 99
    p = d / "future.safetensors"
    save_file(load_file(str(pipe.teacher)), str(p), metadata=artifacts.manifest_metadata(json.dumps(raw)))
    return p


def _plain_safetensors(d: Path, pipe: Pipeline) -> Path:
    from safetensors.torch import save_file

    p = d / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(p))
    return p


BAD_INPUTS = {
    "missing": (lambda d, pipe: d / "nope.safetensors", 2, "no such file"),
    "not-safetensors": (_not_safetensors, 1, "not a safetensors file"),
    "truncated": (_truncated, 1, "truncated"),
    "one-byte-short": (_one_byte_short, 1, "truncated"),
    "no-manifest": (_plain_safetensors, 1, "not an enofctl artifact"),
    "newer-schema": (_newer_schema, 1, "newer"),
    "directory": (lambda d, pipe: d, 2, "directory"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("command", ["convert", "distill-teacher", "distill-student", "eval", "inspect"])
def test_bad_input_file(pipe: Pipeline, tmp_path: Path, case: str, command: str) -> None:
    make, expect_code, needle = BAD_INPUTS[case]
    bad = make(tmp_path, pipe)
    out = tmp_path / "out.safetensors"
    args = {
        "convert": ("convert", bad, "--out", out),
        "distill-teacher": ("distill", "--teacher", bad, "--out", out, *QUICK),
        "distill-student": ("distill", "--teacher", pipe.teacher, "--student", bad, "--out", out, *QUICK),
        "eval": ("eval", bad, "--json"),
        "inspect": ("inspect", bad),
    }[command]
    before = listing(tmp_path)
    assert_one_error_line(*run(*args), expect_code, needle)
    assert not out.exists()
    assert listing(tmp_path) == before


def test_newer_schema_message_says_upgrade(pipe: Pipeline, tmp_path: Path) -> None:
    future = _newer_schema(tmp_path, pipe)
    line = assert_one_error_line(*run("inspect", future), 1, "schema 99")
    assert "upgrade enofctl" in line


@pytest.mark.parametrize("args", [
    pytest.param(lambda p, out: ("convert", p.student0, "--out", out), id="convert-student"),
    pytest.param(lambda p, out: ("distill", "--teacher", p.student0, "--out", out, *QUICK),
                 id="distill-student"),
    pytest.param(lambda p, out: ("distill", "--teacher", p.teacher, "--student", p.teacher, "--out", out,
                                 *QUICK), id="distill-teacher-as-student"),
])
def test_wrong_artifact_kind(pipe: Pipeline, tmp_path: Path, args) -> None:
    out = tmp_path / "out.safetensors"
    assert_one_error_line(*run(*args(pipe, out)), 2, "artifact", "is expected here")
    assert listing(tmp_path) == set()


USAGE_ERRORS = {
    "unknown-model": (lambda p, o: ("teacher", "train", "--dataset", "synthetic", "--model", "not_a_model",
                                    *TINY, "--out", o), "unknown model"),
    "unknown-dataset": (lambda p, o: ("teacher", "train", "--dataset", "not_a_dataset", *TINY, "--out", o),
                        "unknown dataset"),
    "eval-unknown-dataset": (lambda p, o: ("eval", p.teacher, "--dataset", "not_a_dataset"),
                             "unknown dataset"),
    "eval-other-dataset": (lambda p, o: ("eval", p.teacher, "--dataset", "digits"), "does not fit"),
    "convert-T0": (lambda p, o: ("convert", p.teacher, "--T", "0", "--out", o), "--T"),
    "convert-T-too-big": (lambda p, o: ("convert", p.teacher, "--T", "5000", "--out", o), "--T"),
    "distill-T0": (lambda p, o: ("distill", "--teacher", p.teacher, "--T", "0", "--out", o, *QUICK), "--T"),
    "eval-T-abc": (lambda p, o: ("eval", p.student, "--T", "abc"), "--T"),
    "eval-T-0": (lambda p, o: ("eval", p.student, "--T", "1,0"), "--T"),
    "epochs-0": (lambda p, o: ("teacher", "train", "--dataset", "synthetic", "--epochs", "0", "--out", o),
                 "--epochs"),
    "bad-model-arg": (lambda p, o: ("teacher", "train", "--dataset", "synthetic", "--model-arg", "nokv",
                                    "--out", o), "KEY=VALUE"),
    "missing-out": (lambda p, o: ("convert", p.teacher), "--out"),
    "missing-teacher": (lambda p, o: ("distill", "--out", o), "--teacher"),
    "unknown-option": (lambda p, o: ("convert", p.teacher, "--out", o, "--bogus"), "--bogus"),
    "unknown-command": (lambda p, o: ("frobnicate",), "frobnicate"),
    "bad-choice": (lambda p, o: ("convert", p.teacher, "--out", o, "--reset", "sideways"), "--reset"),
    "out-is-directory": (lambda p, o: ("convert", p.teacher, "--out", o.parent), "is a directory"),
    "train-out-no-dir": (lambda p, o: ("teacher", "train", "--dataset", "synthetic", *TINY,
                                       "--out", o.parent / "no" / "such" / "t.safetensors"),
                         "does not exist"),
    "convert-out-no-dir": (lambda p, o: ("convert", p.teacher, "--out", o.parent / "no" / "s.safetensors"),
                           "does not exist"),
    "distill-out-no-dir": (lambda p, o: ("distill", "--teacher", p.teacher, "--out",
                                         o.parent / "no" / "s.safetensors", *QUICK), "does not exist"),
    "fetch-unknown-model": (lambda p, o: ("teacher", "fetch", "not_a_model", "--dataset", "synthetic",
                                          "--out", o), "unknown model"),
    "fetch-missing-checkpoint": (lambda p, o: ("teacher", "fetch", "resnet18", "--checkpoint",
                                               o.parent / "nope.pth", "--dataset", "synthetic", "--out", o),
                                 "no such file"),
    "report-is-a-file": (lambda p, o: ("eval", p.teacher, "--limit", "8", "--report", p.teacher),
                         "not a directory"),
    # impossible recipe options: refused before any training, whatever the machine (--device cpu)
    "teacher-amp-on-cpu": (lambda p, o: ("teacher", "train", "--dataset", "synthetic", *TINY, "--device", "cpu",
                                         "--amp", "--out", o), "--amp needs a CUDA device"),
    "distill-amp-on-cpu": (lambda p, o: ("distill", "--teacher", p.teacher, "--device", "cpu", "--amp",
                                         "--out", o, *QUICK), "--amp needs a CUDA device"),
    "autoaugment-grayscale": (lambda p, o: ("teacher", "train", "--dataset", "digits", "--autoaugment",
                                            *TINY, "--out", o), "RGB"),
    "cutout-too-big": (lambda p, o: ("teacher", "train", "--dataset", "digits", "--cutout", "9", *TINY,
                                     "--out", o), "--cutout 9"),
    "val-fraction-too-big": (lambda p, o: ("distill", "--teacher", p.teacher, "--val-fraction", "0.95",
                                           "--out", o, *QUICK), "--val-fraction"),
    # issue #24: the ablation's statistics and the paper's recipe
    "ablate-repeated-seed": (lambda p, o: ("ablate", "--teacher", p.teacher, "--seeds", "0,1,0", "--out",
                                           o.parent / "abl"), "seed 0 is given twice"),
    "ablate-ci-above-1": (lambda p, o: ("ablate", "--teacher", p.teacher, "--ci", "1.5", "--out", o.parent / "abl"),
                          "--ci"),
    "ablate-ci-0": (lambda p, o: ("ablate", "--teacher", p.teacher, "--ci", "0", "--out", o.parent / "abl"),
                    "not a confidence level in (0, 1)"),
    "distill-scratch-with-student": (lambda p, o: ("distill", "--teacher", p.teacher, "--student", p.student0,
                                                   "--init", "scratch", "--out", o, *QUICK), "--init scratch"),
    "distill-recipe-with-student": (lambda p, o: ("distill", "--teacher", p.teacher, "--student", p.student0,
                                                  "--recipe", "enof-cifar", "--out", o, *QUICK),
                                    "--recipe enof-cifar trains from scratch"),
    "distill-unknown-recipe": (lambda p, o: ("distill", "--teacher", p.teacher, "--recipe", "enof-imagenet",
                                             "--out", o, *QUICK), "--recipe"),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors(pipe: Pipeline, tmp_path: Path, case: str) -> None:
    make, needle = USAGE_ERRORS[case]
    out = tmp_path / "out.safetensors"
    before_pipe = listing(pipe.dir)
    assert_one_error_line(*run(*make(pipe, out)), 2, needle)
    assert listing(tmp_path) == set()  # no artifact, no folder made, no temporary file
    assert listing(pipe.dir) == before_pipe


def test_no_arguments_is_a_usage_error() -> None:
    code, _, err = run()
    assert code == 2
    assert "Traceback" not in err


def test_help_exits_zero() -> None:
    code, out, err = run("--help")
    assert code == 0 and "Traceback" not in err
    assert "teacher" in out and "distill" in out


def test_teacher_student_mismatch(pipe: Pipeline, tmp_path: Path) -> None:
    digits_teacher = tmp_path / "digits.safetensors"
    ok("teacher", "train", "--dataset", "digits", *TINY, "--limit-train", "64", "--out", digits_teacher)
    assert manifest(digits_teacher).model.num_classes == 10
    out = tmp_path / "m.safetensors"
    before = listing(tmp_path)
    line = assert_one_error_line(*run("distill", "--teacher", digits_teacher, "--student", pipe.student0,
                                      "--out", out, *QUICK), 2, "mismatch")
    assert "digits" in line and "synthetic" in line
    assert listing(tmp_path) == before


def test_existing_out_survives_a_failed_run(pipe: Pipeline, tmp_path: Path) -> None:
    """A failing stage must not clobber the artifact already at --out."""
    out = tmp_path / "keep.safetensors"
    shutil.copy(pipe.student0, out)
    before = sha256(out)
    assert_one_error_line(*run("convert", pipe.student0, "--out", out), 2, "teacher is expected")
    assert_one_error_line(*run("distill", "--teacher", pipe.teacher, "--T", "0", "--out", out), 2, "--T")
    assert sha256(out) == before
    assert listing(tmp_path) == {"keep.safetensors"}


