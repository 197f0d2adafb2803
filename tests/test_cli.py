"""The `enofctl` command line, end to end and in-process: the pipeline chained through files, and every bad
input ending in one error line, the right exit code and nothing written.

Budgets are tiny (the `synthetic` dataset, 1/8-width ResNet20, one epoch, a few dozen samples) so the whole
file runs on a small CPU machine in well under two minutes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from clihelp import assert_one_error_line, ok, run

from enofctl import artifacts

TINY = ("--width", "0.125", "--epochs", "1")  # a teacher that trains in a couple of seconds
QUICK = ("--epochs", "1", "--limit-train", "64")  # a distillation that does too


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ----------------------------------------------------------------------------------------------------------
# the pipeline, once per module


@dataclass
class Pipeline:
    dir: Path
    teacher: Path
    student0: Path  # converted, T=2
    student: Path  # distilled from student0
    student2: Path  # distilled straight from the teacher with --T 2
    stdout: dict[str, str]
    stderr: dict[str, str]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> Pipeline:
    d = tmp_path_factory.mktemp("pipeline")
    t, s0, s, s2 = (d / n for n in ("t.safetensors", "s0.safetensors", "s.safetensors", "s2.safetensors"))
    stdout, stderr = {}, {}
    steps = {
        "teacher": ("teacher", "train", "--dataset", "synthetic", *TINY, "--out", t),
        "convert": ("convert", t, "--T", "2", "--out", s0),
        "distill": ("distill", "--teacher", t, "--student", s0, "--out", s, *QUICK),
        "distill2": ("distill", "--teacher", t, "--T", "2", "--out", s2, *QUICK),
    }
    for name, args in steps.items():
        code, stdout[name], stderr[name] = run(*args)
        if code != 0:
            pytest.fail(f"pipeline step {name} failed ({code}): {stderr[name]}")
    return Pipeline(d, t, s0, s, s2, stdout, stderr)


def manifest(path: Path) -> artifacts.Manifest:
    return artifacts.load(path).manifest


# ----------------------------------------------------------------------------------------------------------
# happy path


@pytest.mark.parametrize("step,attr", [("teacher", "teacher"), ("convert", "student0"),
                                       ("distill", "student"), ("distill2", "student2")])
def test_each_stage_prints_its_artifact_path(pipe: Pipeline, step: str, attr: str) -> None:
    path = getattr(pipe, attr)
    assert pipe.stdout[step] == f"{path}\n"
    assert path.is_file()
    assert "Traceback" not in pipe.stderr[step]
    assert "error" not in pipe.stderr[step]


def test_pipeline_leaves_only_artifacts(pipe: Pipeline) -> None:
    """No checkpoints (removed when training ends) and no temporary files are left beside the artifacts."""
    names = listing(pipe.dir)
    assert {"t.safetensors", "s0.safetensors", "s.safetensors", "s2.safetensors"} <= names
    assert not [n for n in names if n.endswith((".ckpt", ".tmp"))], names


def test_training_stages_log_epochs_on_stderr(pipe: Pipeline) -> None:
    assert "teacher epoch 1/1" in pipe.stderr["teacher"]
    assert "distill epoch 1/1" in pipe.stderr["distill"]
    assert pipe.stderr["convert"] == ""


def test_manifests_chain_the_stages(pipe: Pipeline) -> None:
    t, s0, s, s2 = (manifest(p) for p in (pipe.teacher, pipe.student0, pipe.student, pipe.student2))
    t_sha, s0_sha = sha256(pipe.teacher), sha256(pipe.student0)

    assert (t.kind, t.stage, t.spiking) == ("teacher", "teacher-train", None)
    assert t.model.num_classes == 4 and tuple(t.model.input_size) == (3, 16, 16)
    assert t.model.kwargs["width"] == 0.125
    assert len(t.history) == 1

    assert (s0.kind, s0.stage, s0.spiking.T) == ("student", "convert", 2)
    assert [(p.kind, p.sha256) for p in s0.parents] == [("teacher", t_sha)]

    assert (s.kind, s.stage, s.spiking.T) == ("student", "distill", 2)
    assert [(p.kind, p.sha256) for p in s.parents] == [("teacher", t_sha), ("student", s0_sha)]
    assert s.config["epochs"] == 1 and s.config["limit_train"] == 64
    assert 0.0 <= s.metrics["top1"] <= 1.0

    assert (s2.kind, s2.stage, s2.spiking.T) == ("student", "distill", 2)
    assert [(p.kind, p.sha256) for p in s2.parents] == [("teacher", t_sha)]


def test_convert_keeps_the_teacher_weights(pipe: Pipeline) -> None:
    t, s0 = artifacts.load(pipe.teacher), artifacts.load(pipe.student0)
    assert set(t.tensors) == set(s0.tensors)
    for k, v in t.tensors.items():
        assert torch.equal(v, s0.tensors[k]), k


def test_eval_student_json(pipe: Pipeline) -> None:
    code, out, err = run("eval", pipe.student, "--json", "--limit", "64")
    assert code == 0, err
    assert err == ""  # --json: no progress
    r = json.loads(out)
    assert {"top1", "top5", "spikes_per_sample", "firing_rates", "T", "artifact"} <= set(r)
    assert r["artifact"] == str(pipe.student)
    assert r["kind"] == "student" and r["T"] == 2 and r["samples"] == 64
    assert 0.0 <= r["top1"] <= r["top5"] <= 1.0
    assert isinstance(r["spikes_per_sample"], float) and r["spikes_per_sample"] > 0
    rates = r["firing_rates"]
    assert isinstance(rates, dict) and rates
    assert all(isinstance(k, str) and 0.0 <= v <= 1.0 for k, v in rates.items()), rates
    assert len(r["runs"]) == 1
    # the per-layer spikes add up to the total
    layers = r["runs"][0]["layers"]
    assert [la["name"] for la in layers] == list(rates)
    assert sum(la["spikes_per_sample"] for la in layers) == pytest.approx(r["spikes_per_sample"])
    assert r["sha256"] == sha256(pipe.student)


def test_eval_teacher_json(pipe: Pipeline) -> None:
    r = json.loads(ok("eval", pipe.teacher, "--json", "--limit", "64"))
    assert r["kind"] == "teacher"
    assert r["spikes_per_sample"] is None
    assert r["firing_rates"] == {}
    assert r["T"] is None
    assert 0.0 <= r["top1"] <= r["top5"] <= 1.0


def test_eval_several_T(pipe: Pipeline) -> None:
    r = json.loads(ok("eval", pipe.student, "--T", "1,2", "--json", "--limit", "64"))
    runs = r["runs"]
    assert [x["T"] for x in runs] == [1, 2]
    assert r["T"] == 1 and r["top1"] == runs[0]["top1"]  # the top level is the first run
    # time is causal: the first step is the same at T=1 and T=2, the second step only adds spikes
    assert runs[1]["spikes_per_sample"] >= runs[0]["spikes_per_sample"] > 0
    for x in runs:
        assert all(0.0 <= v <= 1.0 for v in x["firing_rates"].values())


def test_eval_several_artifacts_json(pipe: Pipeline) -> None:
    r = json.loads(ok("eval", pipe.teacher, pipe.student, "--json", "--limit", "32"))
    assert [x["kind"] for x in r["results"]] == ["teacher", "student"]


def test_eval_report(pipe: Pipeline, tmp_path: Path) -> None:
    folder = tmp_path / "rep"
    code, out, err = run("eval", pipe.student, "--report", folder, "--limit", "64")
    assert code == 0, err
    assert "top1" in out  # the tables go to stdout
    assert (folder / "report.md").is_file()
    report = json.loads((folder / "report.json").read_text())
    assert report["schema_version"] == 1
    [res] = report["results"]
    assert res["artifact"] == str(pipe.student) and res["T"] == 2
    assert all(0.0 <= v <= 1.0 for v in res["firing_rates"].values())
    assert "top1" in (folder / "report.md").read_text()
    names = listing(folder)
    assert {"report.json", "report.md"} <= names
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")], names  # no temporary files


def test_inspect(pipe: Pipeline) -> None:
    out = ok("inspect", pipe.student)
    assert "student" in out and sha256(pipe.student) in out

    data = json.loads(ok("inspect", pipe.student, "--json"))
    assert data["sha256"] == sha256(pipe.student)
    assert data["path"] == str(pipe.student)
    m = data["manifest"]
    assert m["kind"] == "student" and m["schema_version"] == 1
    assert m["spiking"]["T"] == 2
    teacher_sha = hashlib.sha256(pipe.teacher.read_bytes()).hexdigest()
    assert teacher_sha in [p["sha256"] for p in m["parents"]]
    assert {"teacher", "student"} == {p["kind"] for p in m["parents"]}


def test_datasets() -> None:
    out = ok("datasets")
    assert "digits" in out and "synthetic" in out

    rows = {r["name"]: r for r in json.loads(ok("datasets", "--json"))}
    assert rows["digits"]["available"] is True
    assert rows["synthetic"]["available"] is True
    assert {"mnist", "cifar10", "imagefolder"} <= set(rows)
    assert rows["imagefolder"]["available"] is False  # needs --data-dir


def test_recipe_options_reach_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--val-fraction", "0.25",
       "--autoaugment", "--cutout", "4", "--no-augment", "--quiet", "--out", out)
    m = manifest(out)
    assert {k: m.config[k] for k in ("augment", "autoaugment", "cutout", "val_fraction", "amp")} == {
        "augment": False, "autoaugment": True, "cutout": 4, "val_fraction": 0.25, "amp": False}
    assert m.metrics["best_epoch"] == 1 and m.metrics["best_val_top1"] == m.history[0]["val_top1"]
    assert {"val_top1", "test_top1"} <= set(m.history[0])


def test_limit_test_evaluates_the_first_n_test_samples(pipe: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "s.safetensors"
    ok("distill", "--teacher", pipe.teacher, "--T", "1", *QUICK, "--limit-test", "7", "--quiet", "--out", out)
    m = manifest(out)
    assert m.config["limit_test"] == 7 and m.metrics["samples"] == 7
    for acc in (m.history[0]["test_top1"], m.metrics["top1"]):  # per-epoch and final: a count out of 7
        assert abs(acc * 7 - round(acc * 7)) < 1e-9
    assert manifest(pipe.student).config["limit_test"] is None and manifest(pipe.student).metrics["samples"] == 256


def test_convert_no_repact(pipe: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "nr.safetensors"
    assert ok("convert", pipe.teacher, "--T", "2", "--no-repact", "--out", out) == f"{out}\n"
    m = manifest(out)
    assert m.spiking.repact is False and manifest(pipe.student0).spiking.repact is True
    # without RepAct the last activation before the classifier spikes too: one more spiking layer
    with_repact = json.loads(ok("eval", pipe.student0, "--json", "--limit", "16"))["firing_rates"]
    without = json.loads(ok("eval", out, "--json", "--limit", "16"))["firing_rates"]
    assert set(with_repact) < set(without)


def test_neuron_options_reach_the_student(pipe: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "if.safetensors"
    ok("convert", pipe.teacher, "--decay", "1", "--v-th", "1", "--reset", "soft", "--v-init", "0.5",
       "--surrogate", "atan", "--out", out)
    assert manifest(out).spiking.neuron.model_dump() == {
        "kind": "lif", "decay": 1.0, "v_th": 1.0, "reset": "soft", "surrogate": "atan", "alpha": None, "v_init": 0.5}
    assert_one_error_line(*run("convert", pipe.teacher, "--v-init", "1.5", "--out", out), 2, "--v-init")


def test_convert_json_and_odd_file_name(pipe: Pipeline, tmp_path: Path) -> None:
    """The printed path is the path, verbatim, even with characters that rich would read as markup."""
    out = tmp_path / "a[bold]b [x]:smile:.safetensors"
    assert ok("convert", pipe.teacher, "--T", "3", "--out", out) == f"{out}\n"
    assert manifest(out).spiking.T == 3
    data = json.loads(ok("convert", pipe.teacher, "--T", "3", "--out", out, "--json"))
    assert data == {"artifact": str(out), "kind": "student", "T": 3, "method": "surrogate", "repact": True}


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


# ----------------------------------------------------------------------------------------------------------
# teacher fetch


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:  # the hub reads the variable when it is imported, which may already have happened
        import huggingface_hub.constants as hub_constants
    except ImportError:
        return
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


def test_fetch_offline_without_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    out = tmp_path / "x.safetensors"
    assert_one_error_line(*run("teacher", "fetch", "resnet18", "--dataset", "cifar10", "--out", out), 1,
                          "--checkpoint")
    assert listing(tmp_path) == set()


def test_fetch_bad_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    junk = tmp_path / "weights.pth"
    junk.write_bytes(b"not a checkpoint at all")
    out = tmp_path / "x.safetensors"
    assert_one_error_line(*run("teacher", "fetch", "resnet18", "--checkpoint", junk, "--dataset", "synthetic",
                               "--out", out), 1, "cannot load weights")
    assert listing(tmp_path) == {"weights.pth"}


def test_fetch_from_local_checkpoint_reheads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from safetensors.torch import save_file

    _offline(monkeypatch)
    src = timm.create_model("resnet18", num_classes=1000)
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(weights))
    out = tmp_path / "t.safetensors"
    code, stdout, err = run("teacher", "fetch", "resnet18", "--checkpoint", weights, "--dataset", "synthetic",
                            "--out", out, "--quiet")
    assert code == 0, err
    assert stdout == f"{out}\n"

    art = artifacts.load(out, expect="teacher")
    m = art.manifest
    assert (m.kind, m.stage, m.model.name, m.model.num_classes) == ("teacher", "teacher-fetch", "resnet18", 4)
    assert art.tensors["fc.weight"].shape == (4, 512)  # re-headed to the 4 synthetic classes
    # the backbone weights are the checkpoint's, not a fresh initialisation
    ref = src.state_dict()
    for k in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_var"):
        assert torch.equal(art.tensors[k], ref[k]), k
    assert 0.0 <= m.metrics["top1"] <= 1.0  # evaluated on synthetic, whose 16x16 images resnet18 still takes
    assert listing(tmp_path) == {"weights.safetensors", "t.safetensors"}
    # and it works as a teacher downstream
    r = json.loads(ok("eval", out, "--json", "--limit", "16"))
    assert r["kind"] == "teacher" and r["model"] == "resnet18"


# ----------------------------------------------------------------------------------------------------------
# --resume


def _stop_after_first_epoch(ev) -> None:
    if ev.metrics and ev.metrics.get("epoch") == 1:  # sent after epoch 1's checkpoint is written
        raise KeyboardInterrupt


RESUME_ARGS = ("--dataset", "synthetic", "--width", "0.125", "--epochs", "2", "--limit-train", "128",
               "--seed", "3", "--device", "cpu")


def test_resume_after_interrupt_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    from enofctl.stages import TeacherConfig, train_teacher

    # what `teacher train RESUME_ARGS` builds
    cfg = TeacherConfig(dataset="synthetic", model_kwargs={"width": 0.125}, epochs=2, limit_train=128, seed=3,
                        device="cpu")
    a_dir, b_dir = tmp_path / "interrupted", tmp_path / "straight"
    a_dir.mkdir()
    b_dir.mkdir()
    a, b = a_dir / "t.safetensors", b_dir / "t.safetensors"

    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, a, progress=_stop_after_first_epoch)
    assert not a.exists()
    assert listing(a_dir) == {"t.safetensors.ckpt"}  # the checkpoint of epoch 1, and nothing half-written

    epochs_seen = []

    def log_epochs(ev) -> None:
        if ev.metrics:
            epochs_seen.append(ev.metrics["epoch"])

    train_teacher(cfg, a, resume=True, progress=log_epochs)
    assert epochs_seen == [2]  # only the missing epoch was trained
    assert listing(a_dir) == {"t.safetensors"}  # checkpoint removed at the end

    train_teacher(cfg, b)

    ta, tb = artifacts.load(a), artifacts.load(b)
    assert [h["epoch"] for h in ta.manifest.history] == [1, 2]
    assert set(ta.tensors) == set(tb.tensors)
    for k in ta.tensors:
        torch.testing.assert_close(ta.tensors[k], tb.tensors[k], rtol=1e-5, atol=1e-6, msg=k)
    for ha, hb in zip(ta.manifest.history, tb.manifest.history, strict=True):
        assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-5)
        assert ha["test_top1"] == hb["test_top1"]
    assert ta.manifest.metrics["top1"] == tb.manifest.metrics["top1"]


def test_cli_interrupt_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in `teacher train` exits 130 with the checkpoint kept; `--resume` finishes the run."""
    import enofctl.cli.teacher as teacher_cli

    @contextlib.contextmanager
    def interrupting_progress(quiet: bool, what: str):
        yield _stop_after_first_epoch

    out = tmp_path / "t.safetensors"
    with monkeypatch.context() as m:
        m.setattr(teacher_cli, "progress", interrupting_progress)
        code, stdout, err = run("teacher", "train", *RESUME_ARGS, "--out", out)
    assert code == 130
    assert stdout == ""
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line] == [
        "enofctl: interrupted (a checkpoint is kept; continue with --resume)"], err
    assert listing(tmp_path) == {"t.safetensors.ckpt"}

    code, stdout, err = run("teacher", "train", *RESUME_ARGS, "--resume", "--out", out)
    assert code == 0, err
    assert stdout == f"{out}\n"
    assert "epoch 1/2" not in err and "epoch 2/2" in err  # epoch 1 came from the checkpoint
    assert listing(tmp_path) == {"t.safetensors"}
    assert [h["epoch"] for h in manifest(out).history] == [1, 2]


def test_non_finite_loss_is_a_runtime_error(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    assert_one_error_line(*run("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "128",
                               "--lr", "1e30", "--out", out), 1, "non-finite loss")
    assert listing(tmp_path) == set()


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    assert ok("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--resume",
              "--quiet", "--out", out) == f"{out}\n"
    assert len(manifest(out).history) == 1


# ----------------------------------------------------------------------------------------------------------
# the installed entry points


def test_entry_points_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "enofctl", "--help"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "teacher" in r.stdout and "convert" in r.stdout and "distill" in r.stdout

    script = Path(sys.executable).with_name("enofctl")
    if not script.exists():
        script = Path(shutil.which("enofctl") or "enofctl")
    r = subprocess.run([str(script), "convert", "missing.safetensors", "--out", "x.safetensors"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == ["enofctl: error: no such file: missing.safetensors"]
    assert listing(tmp_path) == set()
