"""The persisted schema: one frozen, versioned set of models; a snapshot of it per version; the upgrade path
from every older version, checked on artifacts the previous release wrote (tests/data/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from clihelp import ok
from pydantic import ValidationError

from enofctl import artifacts
from enofctl.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Calibration,
    DataRef,
    Manifest,
    ModelSpec,
    SpikingSpec,
    StudentMetrics,
    TeacherMetrics,
    upgrade,
)

DATA = Path(__file__).parent / "data"
V1 = {name: DATA / f"v1_{name}.safetensors" for name in ("teacher", "student", "student_cq")}
BUMP = "persisted schema changed: bump SCHEMA_VERSION and add a migration step"


def live_schema() -> dict[str, Any]:
    return json.loads(json.dumps(Manifest.model_json_schema(), sort_keys=True))


def snapshot_path(version: int = SCHEMA_VERSION) -> Path:
    return DATA / f"manifest_schema_v{version}.json"


def _without_docs(schema: Any) -> Any:
    """The schema less what does not change a persisted byte: descriptions and titles."""
    if isinstance(schema, dict):
        return {k: _without_docs(v) for k, v in schema.items() if k not in ("description", "title")}
    if isinstance(schema, list):
        return [_without_docs(v) for v in schema]
    return schema


# ----------------------------------------------------------------------------------------------------------
# the schema itself


def test_schema_matches_the_snapshot_of_its_version() -> None:
    path = snapshot_path()
    assert path.is_file(), (f"{BUMP} (no snapshot {path.name} for schema {SCHEMA_VERSION}: write it with "
                            "`python tests/test_schema.py --write`)")
    stored = json.loads(path.read_text())
    live = live_schema()
    assert _without_docs(live) == _without_docs(stored), (
        f"{BUMP}. The live Manifest schema differs from {path.name}; an artifact written now would not be the "
        f"schema-{SCHEMA_VERSION} artifact older readers expect. Set SCHEMA_VERSION = {SCHEMA_VERSION + 1}, "
        f"add MIGRATIONS[{SCHEMA_VERSION}] (enofctl/schema/manifest.py) and write the new snapshot with "
        "`python tests/test_schema.py --write`.")
    assert live == stored, (f"only descriptions or titles differ from {path.name}: no version bump needed, "
                            "rewrite the snapshot with `python tests/test_schema.py --write`")


def test_every_older_version_has_a_migration() -> None:
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION)), \
        f"need exactly one upgrade step from each of versions 1..{SCHEMA_VERSION - 1}, have {sorted(MIGRATIONS)}"
    assert get_args(Manifest.model_fields["schema_version"].annotation) == (SCHEMA_VERSION,)
    assert Manifest.model_fields["schema_version"].default == SCHEMA_VERSION


def test_public_names_are_the_schema_models() -> None:
    import enofctl.schema as schema
    import enofctl.spiking as spiking

    for name in ("Manifest", "ModelSpec", "DataRef", "ParentRef", "Versions", "TeacherMetrics", "StudentMetrics",
                 "SCHEMA_VERSION"):
        assert getattr(artifacts, name) is getattr(schema, name), name
    assert (spiking.NeuronSpec, spiking.SpikingSpec) == (schema.NeuronSpec, schema.SpikingSpec)


def test_importing_the_schema_imports_no_model_code() -> None:
    code = ("import sys, enofctl.schema; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('timm', 'torchvision', 'safetensors', 'typer', 'rich') or m.startswith(('enofctl.models', "
            "'enofctl.spiking', 'enofctl.stages', 'enofctl.artifacts', 'enofctl.cli'))); print(bad)")
    root = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env=env).stdout
    assert out.strip() == "[]"


def _teacher(**kw) -> Manifest:
    spec = ModelSpec(name="resnet20", num_classes=3, in_chans=3, input_size=(3, 8, 8), mean=(0.5,) * 3,
                     std=(0.25,) * 3)
    return Manifest(kind="teacher", stage="teacher-train", model=spec,
                    data=DataRef(dataset="synthetic", classes=["a", "b", "c"]), **kw)


def test_models_are_frozen_and_strict() -> None:
    m = _teacher()
    with pytest.raises(ValidationError, match="frozen"):
        m.stage = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        m.model.act.levels = 4  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        m.metrics.top1 = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        SpikingSpec(T=2, surprise=True)  # type: ignore[call-arg]
    assert m.model_copy(update={"stage": "other"}).stage == "other" and m.stage == "teacher-train"


def test_save_returns_the_sealed_manifest_and_leaves_its_argument_alone(tmp_path: Path) -> None:
    m = _teacher(metrics=TeacherMetrics(top1=0.5))
    path, saved = artifacts.save(tmp_path / "t.safetensors", m, {"w": torch.ones(2)})
    assert m.tensors_sha256 == "" and saved.tensors_sha256 == artifacts.tensors_digest({"w": torch.ones(2)})
    assert saved == m.model_copy(update={"tensors_sha256": saved.tensors_sha256})
    assert artifacts.load(path).manifest == saved


# ----------------------------------------------------------------------------------------------------------
# metrics: one model per kind


def test_metrics_are_the_model_of_the_kind() -> None:
    assert type(_teacher().metrics) is TeacherMetrics
    t = _teacher(metrics={"top1": 0.5, "samples": 10})
    assert type(t.metrics) is TeacherMetrics and (t.metrics.top1, t.metrics.samples) == (0.5, 10)
    s = Manifest(kind="student", stage="distill", model=t.model, data=t.data, spiking=SpikingSpec(),
                 metrics={"top1": 0.5})
    assert type(s.metrics) is StudentMetrics and s.metrics.spikes_per_sample is None
    assert type(Manifest(kind="student", stage="convert", model=t.model, data=t.data,
                         spiking=SpikingSpec()).metrics) is StudentMetrics


def test_a_teacher_cannot_carry_student_metrics() -> None:
    with pytest.raises(ValidationError, match=r"metrics\.spikes_per_sample\n  Extra inputs"):
        _teacher(metrics={"top1": 0.5, "spikes_per_sample": 3.0})
    with pytest.raises(ValidationError, match="a teacher manifest carries TeacherMetrics, not StudentMetrics"):
        _teacher(metrics=StudentMetrics(top1=0.5))
    with pytest.raises(ValidationError, match=r"metrics\.top1"):
        _teacher(metrics={"top1": 1.5})


def test_metrics_json_holds_only_what_was_measured() -> None:
    m = _teacher(metrics=TeacherMetrics(top1=0.5, samples=10))
    assert json.loads(m.model_dump_json())["metrics"] == {"top1": 0.5, "samples": 10}
    assert m.model_dump(mode="json")["metrics"] == {"top1": 0.5, "samples": 10}
    assert _teacher().model_dump()["metrics"] == {}
    assert Manifest.model_validate_json(m.model_dump_json()) == m


# ----------------------------------------------------------------------------------------------------------
# upgrades


def _v1_raw(name: str) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(V1[name]), "pt") as f:
        return json.loads(f.metadata()[artifacts.METADATA_KEY])


def test_v1_fixtures_are_v1() -> None:
    for name, path in V1.items():
        assert _v1_raw(name)["schema_version"] == 1, name
        assert path.stat().st_size < 200_000, name


def test_upgrade_v1_keeps_the_metrics_and_adds_the_defaults() -> None:
    raw = _v1_raw("student")
    up = upgrade(raw)
    assert raw["schema_version"] == 1 and "scaling" not in raw["spiking"]  # the input is not changed
    assert up["schema_version"] == SCHEMA_VERSION and up["spiking"]["scaling"] == "none"
    m = Manifest.model_validate(up)
    assert m.metrics.model_dump() == raw["metrics"]


def test_upgrade_v1_keeps_what_the_unreleased_schema_1_wrote() -> None:
    """Schema-1 files of the development version between 0.1.0 and 2 already had ``scaling``."""
    raw = _v1_raw("student")
    raw["spiking"]["scaling"] = "channel"
    assert Manifest.model_validate(upgrade(raw)).spiking.scaling == "channel"


def test_upgrade_v1_fetched_teacher_without_metrics() -> None:
    raw = {**_v1_raw("teacher"), "stage": "teacher-fetch", "metrics": {}, "history": []}
    assert Manifest.model_validate(upgrade(raw)).metrics == TeacherMetrics()


def test_upgrade_v1_refuses_metrics_the_kind_does_not_have() -> None:
    raw = _v1_raw("teacher")
    raw["metrics"]["spikes_per_sample"] = 1.0
    with pytest.raises(ValidationError, match=r"metrics\.spikes_per_sample"):
        Manifest.model_validate(upgrade(raw))


@pytest.mark.parametrize("name", sorted(V1))
def test_v1_artifact_loads_builds_and_runs_as_it_did(name: str) -> None:
    art = artifacts.load(V1[name])
    m = art.manifest
    assert m.schema_version == SCHEMA_VERSION
    assert type(m.metrics) is (TeacherMetrics if m.kind == "teacher" else StudentMetrics)
    assert m.metrics.model_dump() == _v1_raw(name)["metrics"]
    if m.spiking is not None:
        assert m.spiking.scaling == "none"
    if name == "student_cq":
        assert isinstance(m.calibration, Calibration) and m.calibration.layers
    model = art.build()
    x = torch.randn(2, *m.model.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    expected = torch.tensor(json.loads((DATA / "v1_logits.json").read_text())[V1[name].name])
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)


def test_a_stage_returns_the_manifest_it_wrote(tmp_path: Path) -> None:
    """A schema-1 teacher converts; the StageResult's manifest is the one in the file, digest included."""
    from enofctl.stages import convert, convert_config

    res = convert(V1["teacher"], convert_config(T=2, calibrate=0), tmp_path / "s.safetensors")
    assert res.manifest.tensors_sha256 and res.manifest == artifacts.load(res.path).manifest
    assert res.manifest.parents[0].sha256 == artifacts.file_sha256(V1["teacher"])


@pytest.mark.parametrize("name", sorted(V1))
def test_inspect_shows_a_v1_artifact(name: str) -> None:
    shown = json.loads(ok("inspect", V1[name], "--json"))
    assert shown["manifest"]["schema_version"] == SCHEMA_VERSION
    assert shown["manifest"]["metrics"] == _v1_raw(name)["metrics"]
    text = ok("inspect", V1[name])
    assert f"schema {SCHEMA_VERSION}" in text and "metrics" in text


if __name__ == "__main__":  # python tests/test_schema.py --write: the snapshot of the current version
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_schema.py --write")
    snapshot_path().write_text(json.dumps(live_schema(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {snapshot_path()}")
