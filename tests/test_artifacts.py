"""Artifacts: a save/load round trip, and every way a file can be refused."""

from __future__ import annotations

import errno
import hashlib
import json
import re
import struct
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from enofctl import artifacts
from enofctl.errors import ArtifactError, EnofError, UsageError, WriteError
from enofctl.models import build_model
from enofctl.schema import SCHEMA_VERSION, DataRef, Manifest, ModelSpec, NeuronSpec, SpikingSpec, TeacherMetrics
from enofctl.spiking import SpikingNet, SpikingNeuron, make_spiking

SIZE = (3, 16, 16)


def _model_spec(width: float = 0.125) -> ModelSpec:
    return ModelSpec(name="resnet20", kwargs={"width": width}, num_classes=3, in_chans=3, input_size=SIZE,
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _teacher_model() -> torch.nn.Module:
    model = build_model("resnet20", 3, 3, {"width": 0.125})
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the buffers matter in the round trip
        model.train()(torch.randn(4, *SIZE) * 2 + 0.3)
    return model.eval()


def _teacher_manifest(model: ModelSpec | None = None) -> Manifest:
    return Manifest(kind="teacher", stage="teacher-train", model=model or _model_spec(),
                    data=DataRef(dataset="synthetic", classes=["a", "b", "c"]),
                    metrics=TeacherMetrics(top1=0.5, samples=2), history=[{"epoch": 1, "loss": 1.25}])


def _student_manifest(spiking: SpikingSpec) -> Manifest:
    return Manifest(kind="student", stage="convert", model=_model_spec(),
                    data=DataRef(dataset="synthetic", classes=["a", "b", "c"]), spiking=spiking)


@pytest.fixture
def teacher_file(tmp_path: Path):
    model = _teacher_model()
    path, manifest = artifacts.save(tmp_path / "teacher.safetensors", _teacher_manifest(), model.state_dict())
    return path, model, manifest


@pytest.fixture
def student_file(tmp_path: Path):
    spec = SpikingSpec(T=2, neuron=NeuronSpec(reset="soft", surrogate="atan"))
    student = make_spiking(_teacher_model(), spec, SIZE).eval()
    path = artifacts.save(tmp_path / "student.safetensors", _student_manifest(spec),
                          student.body.state_dict()).path
    return path, student


def _header_len(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


def _rewrite_manifest(path: Path, edit) -> None:
    """Rewrite ``path`` with the same tensors and ``edit(manifest_dict)`` as its manifest."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    raw = json.loads(meta[artifacts.METADATA_KEY])
    edit(raw)
    save_file(tensors, str(path), metadata=artifacts.manifest_metadata(json.dumps(raw)))


def test_edited_manifest_is_refused(teacher_file) -> None:
    """A manifest changed without its digest (e.g. a hand-edited input size) is refused as tampered."""
    path = teacher_file[0]
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    raw = json.loads(meta[artifacts.METADATA_KEY])
    raw["model"]["input_size"] = [3, 99, 99]
    meta[artifacts.METADATA_KEY] = json.dumps(raw)
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(ArtifactError, match="manifest does not match its sha256"):
        artifacts.load(path)


# ----------------------------------------------------------------------------------------------------------
# round trips


def test_teacher_round_trip(teacher_file) -> None:
    path, model, manifest = teacher_file
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed away
    art = artifacts.load(path, expect="teacher")
    assert art.kind == "teacher"
    assert art.manifest == manifest
    assert art.manifest.tensors_sha256 == artifacts.tensors_digest(model.state_dict())
    assert art.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert art.parent_ref().sha256 == art.sha256 and art.parent_ref().kind == "teacher"

    sd = model.state_dict()
    assert set(art.tensors) == set(sd)
    for k, v in sd.items():
        assert art.tensors[k].dtype == v.dtype and torch.equal(art.tensors[k], v), k

    rebuilt = art.build()
    assert not rebuilt.training
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_student_round_trip(student_file) -> None:
    path, student = student_file
    art = artifacts.load(str(path), expect="student")
    assert art.kind == "student"
    assert art.manifest.spiking == student.spec
    rebuilt = art.build()
    assert isinstance(rebuilt, SpikingNet) and rebuilt.T == 2
    assert list(rebuilt.neurons()) == list(student.neurons())
    assert all(m.spec.reset == "soft" and m.spec.surrogate == "atan" for m in rebuilt.neurons().values())
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), student(x), rtol=0, atol=0)
    # a student's ANN view: same weights, every activation a ReLU again
    ann = art.build_ann()
    assert not any(isinstance(m, SpikingNeuron) for m in ann.modules())
    assert sum(isinstance(m, torch.nn.ReLU) for m in ann.modules()) == len(student.neurons()) + 1


def test_manifest_json_round_trip() -> None:
    m = _student_manifest(SpikingSpec(T=3, repact=False))
    assert Manifest.model_validate_json(m.model_dump_json()) == m


# ----------------------------------------------------------------------------------------------------------
# refusals


@contextmanager
def refused(exc: type[Exception], path: Path, pattern: str):
    """Expect ``exc`` whose message, with ``path`` written as ``<path>``, matches ``pattern`` (re.search).

    The path is taken out first: pytest's folder names (``test_truncated0``) would otherwise match.
    """
    with pytest.raises(exc) as info:
        yield
    msg = str(info.value).replace(str(path), "<path>")
    assert re.search(pattern, msg), msg


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    with refused(UsageError, path, r"^no such file: <path>$"):
        artifacts.load(path)


def test_directory(tmp_path: Path) -> None:
    with refused(UsageError, tmp_path, r"^<path> is a directory"):
        artifacts.load(tmp_path)


@pytest.mark.parametrize("n", [0, 5, 4096])
def test_not_safetensors(tmp_path: Path, n: int) -> None:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(torch.randint(0, 256, (n,), dtype=torch.uint8).numpy().tobytes())
    with refused(ArtifactError, path, r"^<path> is not a safetensors file"):
        artifacts.load(path)


def test_header_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 6) + b"{nope}")
    with refused(ArtifactError, path, r"header is not JSON"):
        artifacts.load(path)


def test_header_longer_than_file(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b'{"a": 1}')
    with refused(ArtifactError, path, r"^<path> is not a safetensors file, or is truncated \(bad header"):
        artifacts.load(path)


def test_truncated(teacher_file) -> None:
    path = teacher_file[0]
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-100])
    with refused(ArtifactError, path, rf"^<path> is truncated .*\({size - 100} bytes, header says {size}\)"):
        artifacts.load(path)


def test_trailing_bytes(teacher_file) -> None:
    path = teacher_file[0]
    size = path.stat().st_size
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    with refused(ArtifactError, path, rf"trailing bytes \({size + 8} bytes, header says {size}\)"):
        artifacts.load(path)


@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_flipped_tensor_byte(teacher_file, where: float) -> None:
    path = teacher_file[0]
    data = bytearray(path.read_bytes())
    start = 8 + _header_len(data)
    i = {0: start, 0.5: (start + len(data)) // 2, -1: len(data) - 1}[where]
    data[i] ^= 0x01
    path.write_bytes(bytes(data))
    with refused(ArtifactError, path, r"^<path>: tensor data does not match the manifest's sha256"):
        artifacts.load(path)


def test_newer_schema(teacher_file) -> None:
    path = teacher_file[0]
    _rewrite_manifest(path, lambda raw: raw.update(schema_version=SCHEMA_VERSION + 1))
    with refused(ArtifactError, path, rf"manifest schema {SCHEMA_VERSION + 1} is newer than this enofctl "
                 rf"understands \({SCHEMA_VERSION}\)"):
        artifacts.load(path)


def test_older_schema_without_upgrade(teacher_file) -> None:
    path = teacher_file[0]
    _rewrite_manifest(path, lambda raw: raw.update(schema_version=0))
    with refused(ArtifactError, path, r"manifest schema 0 is too old"):
        artifacts.load(path)


@pytest.mark.parametrize(("edit", "pattern"), [
    (lambda raw: raw.update(surprise=1), "invalid manifest at surprise"),
    (lambda raw: raw["model"].update(num_classes=0), "invalid manifest at model.num_classes"),
    (lambda raw: raw.update(kind="student"), "invalid manifest at manifest: .*spiking"),  # student needs it
    (lambda raw: raw.update(tensors_sha256="0" * 63), "invalid manifest at tensors_sha256"),
    (lambda raw: raw.pop("schema_version"), "invalid manifest: no integer schema_version"),
])
def test_invalid_manifest(teacher_file, edit, pattern: str) -> None:
    path = teacher_file[0]
    _rewrite_manifest(path, edit)
    with refused(ArtifactError, path, pattern):
        artifacts.load(path)


def test_manifest_not_json(teacher_file) -> None:
    path = teacher_file[0]
    save_file(load_file(str(path)), str(path), metadata=artifacts.manifest_metadata("{not json"))
    with refused(ArtifactError, path, r"^<path>: manifest is not valid JSON$"):
        artifacts.load(path)


def test_safetensors_without_manifest(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2, 2)}, str(path))
    with refused(ArtifactError, path, r"^<path> is a safetensors file but not an enofctl artifact"):
        artifacts.load(path)
    save_file({"w": torch.ones(2, 2)}, str(path), metadata={"other": "x"})
    with refused(ArtifactError, path, r"^<path> is a safetensors file but not an enofctl artifact"):
        artifacts.load(path)


def test_wrong_kind(student_file, teacher_file) -> None:
    with refused(UsageError, student_file[0], r"^<path> is a student artifact; a teacher is expected"):
        artifacts.load(student_file[0], expect="teacher")
    with refused(UsageError, teacher_file[0], r"^<path> is a teacher artifact; a student is expected"):
        artifacts.load(teacher_file[0], expect="student")


def test_tensors_of_another_model_are_refused_at_build(tmp_path: Path) -> None:
    """A self-consistent file whose tensors do not fit the model its manifest describes."""
    manifest = _teacher_manifest(model=_model_spec(width=0.25))
    path = artifacts.save(tmp_path / "t.safetensors", manifest, _teacher_model().state_dict()).path
    art = artifacts.load(path)
    with pytest.raises(ArtifactError,
                       match=r"tensor 'stem\.0\.weight' is torch\.float32\[8, 3, 3, 3\], the model expects"):
        art.build()
    sd = {k: v for k, v in _teacher_model().state_dict().items() if k != "fc.bias"}
    art = artifacts.load(artifacts.save(tmp_path / "u.safetensors", _teacher_manifest(), sd).path)
    with pytest.raises(ArtifactError, match=r"do not match the model .*missing \['fc\.bias'\]"):
        art.build()


def test_student_with_unusable_input_size_is_refused_at_build(student_file) -> None:
    """The manifest is not covered by the tensor hash: an edited input size must still fail cleanly."""
    path = student_file[0]
    _rewrite_manifest(path, lambda raw: raw["model"].update(input_size=[3, -6, 16]))
    art = artifacts.load(path)
    with pytest.raises(EnofError, match=r"input of size \(3, -6, 16\)"):
        art.build()


def test_save_into_missing_directory(tmp_path: Path) -> None:
    out = tmp_path / "nowhere" / "t.safetensors"
    with refused(UsageError, out.parent, r"directory <path> does not exist"):
        artifacts.save(out, _teacher_manifest(), {"w": torch.ones(1)})
    assert not out.exists() and not out.parent.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_nothing(tmp_path: Path, teacher_file, monkeypatch) -> None:
    """A write that fails half-way leaves neither a temporary file nor a changed target."""
    import safetensors.torch

    target, model, _ = teacher_file
    before = target.read_bytes()

    def half_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_write)
    with pytest.raises(WriteError, match="No space left on device"):
        artifacts.save(target, _teacher_manifest(), model.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert target.read_bytes() == before


def test_save_onto_a_directory(tmp_path: Path) -> None:
    with refused(UsageError, tmp_path, r"^--out <path> is a directory"):
        artifacts.save(tmp_path, _teacher_manifest(), {"w": torch.ones(1)})


# ----------------------------------------------------------------------------------------------------------
# fuzz: a mutated artifact loads or is refused with an enofctl error, never anything else; whatever loads has
# the original tensors (tensor tampering is always caught) and builds or is refused with an enofctl error


@pytest.fixture(scope="module", params=["teacher", "student"])
def valid_artifact(request, tmp_path_factory) -> tuple[bytes, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    model = _teacher_model()
    path = tmp_path_factory.mktemp("fuzz") / "a.safetensors"
    if request.param == "teacher":
        artifacts.save(path, _teacher_manifest(), model.state_dict())
    else:
        spec = SpikingSpec(T=2)
        artifacts.save(path, _student_manifest(spec), make_spiking(model, spec, SIZE).body.state_dict())
    return path.read_bytes(), load_file(str(path))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_artifact_is_loaded_or_refused(valid_artifact, tmp_path: Path, data) -> None:
    original, tensors = valid_artifact
    blob = bytearray(original)
    header_end = 8 + _header_len(original)
    n_edits = data.draw(st.integers(1, 3), label="edits")
    for _ in range(n_edits):
        how = data.draw(st.sampled_from(["flip-header", "flip-header", "flip-anywhere", "truncate"]),
                        label="how")
        if how == "truncate":
            del blob[data.draw(st.integers(0, len(blob) - 1), label="cut at"):]
            break
        hi = header_end if how == "flip-header" else len(blob)
        i = data.draw(st.integers(0, min(hi, len(blob)) - 1), label="position")
        blob[i] ^= data.draw(st.integers(1, 255), label="xor")  # always a different byte
    path = tmp_path / "fuzzed.safetensors"
    path.write_bytes(bytes(blob))
    try:
        art = artifacts.load(path)
    except (ArtifactError, UsageError) as e:
        assert str(e)
        event(f"load refused: {type(e).__name__}")
        return
    event("loaded")
    assert set(art.tensors) == set(tensors)
    for k, v in tensors.items():
        assert art.tensors[k].dtype == v.dtype and torch.equal(art.tensors[k], v), k
    try:
        art.build()
    except EnofError as e:
        assert str(e)


def test_the_torch_free_digest_is_the_tensors_digest(tmp_path: Path) -> None:
    """`inspect` checks the stored bytes with `artifact_file.stored_digest` (no torch): the digest `save` seals
    with, for every dtype a state dict holds."""
    from safetensors.torch import save_file

    from enofctl.artifact_file import stored_digest

    tensors = {"w": torch.randn(3, 2), "b": torch.zeros(0), "n": torch.tensor(7), "i": torch.arange(4),
               "h": torch.ones(2, dtype=torch.bfloat16), "m": torch.tensor([True, False]),
               "u": torch.arange(3, dtype=torch.uint8)}

    save_file(tensors, str(tmp_path / "t.safetensors"))
    assert stored_digest(tmp_path / "t.safetensors") == artifacts.tensors_digest(tensors)
