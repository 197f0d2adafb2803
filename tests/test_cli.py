"""The `enofctl` command line, end to end and in-process: the pipeline chained through files, what each stage
prints and records, and the installed entry points. Bad inputs: test_cli_errors.py; fetch and --resume:
test_cli_fetch_resume.py.

Budgets are tiny (the `synthetic` dataset, 1/8-width ResNet20, one epoch, a few dozen samples) so the whole
file runs on a small CPU machine in well under two minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clihelp import QUICK, TINY, Pipeline, assert_one_error_line, listing, manifest, ok, run, sha256

from enofctl import artifacts
from enofctl.schema import SCHEMA_VERSION
from enofctl.stages.evaluate import REPORT_SCHEMA_VERSION

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
    assert "distill epoch 1/1" in pipe.stderr["distill"] and "distill done: 1 epoch in" in pipe.stderr["distill"]
    # into a log: a line per calibrated layer, the reconstruction steps, then what it scores
    lines = pipe.stderr["convert"].splitlines()
    assert lines[0].startswith("calibrate layer 1/") and lines[-3].startswith("calibrate layer") and \
        lines[-3].split()[2].split("/")[0] == lines[-3].split()[2].split("/")[1]
    assert lines[-2] == "reconstruct: 200 steps done"
    assert lines[-1].startswith("convert: the student scores top-1") and "epoch" not in pipe.stderr["convert"]


def test_manifests_chain_the_stages(pipe: Pipeline) -> None:
    t, s0, s, s2 = (manifest(p) for p in (pipe.teacher, pipe.student0, pipe.student, pipe.student2))
    t_sha, s0_sha = sha256(pipe.teacher), sha256(pipe.student0)

    assert (t.kind, t.stage, t.spiking) == ("teacher", "teacher-train", None)
    assert t.model.num_classes == 4 and tuple(t.model.input_size) == (3, 16, 16)
    assert t.model.kwargs["width"] == 0.125
    assert [h["epoch"] for h in t.history] == [0, 1]  # 0: the untrained teacher

    assert (s0.kind, s0.stage, s0.spiking.T) == ("student", "convert", 2)
    assert [(p.kind, p.sha256) for p in s0.parents] == [("teacher", t_sha)]

    assert (s.kind, s.stage, s.spiking.T) == ("student", "distill", 2)
    assert [(p.kind, p.sha256) for p in s.parents] == [("teacher", t_sha), ("student", s0_sha)]
    assert s.config["epochs"] == 1 and s.config["limit_train"] == 64
    assert 0.0 <= s.metrics.top1 <= 1.0

    assert (s2.kind, s2.stage, s2.spiking.T) == ("student", "distill", 2)
    assert [(p.kind, p.sha256) for p in s2.parents] == [("teacher", t_sha)]


def test_convert_keeps_the_teacher_weights(pipe: Pipeline) -> None:
    """Calibration (on by default) is folded into the weights: thresholds into BatchNorm's scale and shift,
    amplitudes into the convolutions that read them, a factor on identity shortcuts; the classifier is refitted.
    Nothing else changes (the running statistics are the teacher's), and no per-neuron buffer is added."""
    t, s0 = artifacts.load(pipe.teacher), artifacts.load(pipe.student0)
    added = set(s0.tensors) - set(t.tensors)
    assert set(t.tensors) <= set(s0.tensors) and added
    assert {k.rsplit(".", 1)[1] for k in added} == {"scale"}
    assert {k.rsplit(".", 1)[0] for k in added} == set(s0.manifest.spiking.shortcut_scales)
    cal = s0.manifest.calibration
    assert s0.manifest.spiking.scaling == "none" and cal.folded and cal.layers and cal.readout_ridge is not None
    changed = {k for k, v in t.tensors.items() if not torch.equal(v, s0.tensors[k])}
    kinds = {k.rsplit(".", 1)[1] for k in changed}
    assert kinds <= {"weight", "bias"} and "fc.weight" in changed
    assert not any("running_" in k for k in changed)
    # and convert measured what it wrote: the student's accuracy before training, said on stderr too
    met = s0.manifest.metrics
    assert 0 <= met.top1 <= met.top5 <= 1 and met.samples > 0 and met.teacher_top1 == t.manifest.metrics.top1
    assert f"top-1 {100 * met.top1:.2f} % on {met.samples} test images before training" in pipe.stderr["convert"]


def test_eval_student_json(pipe: Pipeline) -> None:
    code, out, err = run("eval", pipe.student, "--json", "--limit", "64")
    assert code == 0, err
    assert err == ""  # a fast eval into a pipe: no progress line (--json itself does not silence it)
    r = json.loads(out)
    assert {"top1", "top5", "spikes_per_sample", "firing_rates", "T", "artifact"} <= set(r)
    assert r["artifact"] == str(pipe.student)
    assert r["kind"] == "student" and r["T"] == 2 and r["samples"] == 64
    # the shape of several artifacts' output too: results and gates_failed (one artifact's keys also on top)
    assert r["gates_failed"] == [] and r["results"] == [{k: r[k] for k in r if k not in ("results", "gates_failed")}]
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
    assert r["T"] == 2 and r["top1"] == runs[1]["top1"]  # the top level is the student's own T
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
    assert report["schema_version"] == REPORT_SCHEMA_VERSION == 2
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
    assert m["kind"] == "student" and m["schema_version"] == SCHEMA_VERSION
    assert m["spiking"]["T"] == 2
    teacher_sha = sha256(pipe.teacher)
    assert teacher_sha in [p["sha256"] for p in m["parents"]]
    assert {"teacher", "student"} == {p["kind"] for p in m["parents"]}


def test_datasets() -> None:
    out = ok("datasets")
    assert "digits" in out and "synthetic" in out
    assert "needs enofctl[events])" in out  # not read as rich markup

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
    assert m.metrics.best_epoch == 1 and m.metrics.best_val_top1 == m.history[1]["val_top1"]
    assert {"val_top1", "test_top1"} <= set(m.history[0]) & set(m.history[1])


def test_limit_test_evaluates_the_first_n_test_samples(pipe: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "s.safetensors"
    ok("distill", "--teacher", pipe.teacher, "--T", "1", *QUICK, "--limit-test", "7", "--reconstruct", "0", "--quiet",
       "--out", out)
    m = manifest(out)
    assert m.config["limit_test"] == 7 and m.metrics.samples == 7
    for acc in (*(h["test_top1"] for h in m.history), m.metrics.top1):  # per-epoch and final: out of 7
        assert abs(acc * 7 - round(acc * 7)) < 1e-9
    assert manifest(pipe.student).config["limit_test"] is None and manifest(pipe.student).metrics.samples == 256


def test_convert_no_repact(pipe: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "nr.safetensors"
    assert ok("convert", pipe.teacher, "--T", "2", "--no-repact", "--reconstruct", "0", "--out", out) == f"{out}\n"
    m = manifest(out)
    assert m.spiking.repact is False and manifest(pipe.student0).spiking.repact is True
    # without RepAct the last activation before the classifier spikes too: one more spiking layer
    with_repact = json.loads(ok("eval", pipe.student0, "--json", "--limit", "16"))["firing_rates"]
    without = json.loads(ok("eval", out, "--json", "--limit", "16"))["firing_rates"]
    assert set(with_repact) < set(without)


def test_neuron_options_reach_the_student(pipe: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "if.safetensors"
    ok("convert", pipe.teacher, "--decay", "1", "--v-th", "1", "--reset", "soft", "--v-init", "0.5",
       "--surrogate", "atan", "--reconstruct", "0", "--out", out)
    assert manifest(out).spiking.neuron.model_dump() == {
        "kind": "lif", "decay": 1.0, "v_th": 1.0, "reset": "soft", "surrogate": "atan", "alpha": None, "v_init": 0.5}
    assert_one_error_line(*run("convert", pipe.teacher, "--v-init", "1.5", "--out", out), 2, "--v-init")


def test_convert_json_and_odd_file_name(pipe: Pipeline, tmp_path: Path) -> None:
    """The printed path is the path, verbatim, even with characters that rich would read as markup."""
    out = tmp_path / "a[bold]b [x]:smile:.safetensors"
    assert ok("convert", pipe.teacher, "--T", "3", "--reconstruct", "0", "--out", out) == f"{out}\n"
    assert manifest(out).spiking.T == 3
    data = json.loads(ok("convert", pipe.teacher, "--T", "3", "--reconstruct", "0", "--out", out, "--json"))
    cal, met = data.pop("calibration"), data.pop("metrics")
    assert data == {"artifact": str(out), "kind": "student", "T": 3, "method": "surrogate", "repact": True}
    assert met == manifest(out).metrics.model_dump() and 0 <= met["top1"] <= 1
    assert cal["samples"] == 512 and 0 <= cal["agreement_before"] <= 1 and 0 <= cal["agreement_after"] <= 1



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
