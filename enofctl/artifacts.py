"""Artifacts: one ``.safetensors`` file = the weights + a strict, versioned pydantic manifest.

The manifest is a JSON string under the ``enofctl`` key of the safetensors metadata. ``load`` checks, in
order: the file exists, the header is a bounded, well-formed safetensors header, the data is all there, the
manifest validates (with an upgrade path for older schemas and a clear refusal of newer ones), the tensor
bytes match the manifest's sha256, and the tensors match the model the manifest rebuilds. ``save`` writes a
temporary file beside the target and renames it, so a reader never sees a half-written artifact, and returns
the manifest as written (with the tensors' sha256). The manifest's models and its upgrade path are in
`enofctl.schema`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn as nn

from enofctl.artifact_file import (
    DIGEST_KEY,
    METADATA_KEY,
    file_sha256,
    manifest_metadata,
    read_header,
    read_manifest,
)
from enofctl.errors import ArtifactError, UsageError, WriteError
from enofctl.io import atomic_write, file_kind
from enofctl.models import build_model, forward_problem
from enofctl.models.acts import apply_act
from enofctl.schema import (
    SCHEMA_VERSION,
    DataRef,
    Manifest,
    ModelSpec,
    ParentRef,
    StudentMetrics,
    TeacherMetrics,
    Versions,
    current_versions,
)
from enofctl.spiking import make_spiking

# the manifest's models are defined in enofctl.schema; these names stay importable from here
__all__ = [
    "DIGEST_KEY", "METADATA_KEY", "SCHEMA_VERSION", "Artifact", "DataRef", "Manifest", "ModelSpec", "ParentRef",
    "Saved", "StudentMetrics", "TeacherMetrics", "Versions", "check_output_path", "current_versions", "file_sha256",
    "load", "manifest_metadata", "read_header", "save", "seal", "tensors_digest", "verify",
]



# ----------------------------------------------------------------------------------------------------------


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_output_path(out: str | Path, inputs: tuple[str | Path | None, ...] = (), checkpoint: bool = False) -> Path:
    """Fail before any work if ``out`` cannot be written or would destroy something: its folder must exist
    and be writable, and ``out`` must not be a folder, a FIFO or a device, nor one of ``inputs``. With
    ``checkpoint``, the same holds for its training checkpoint ``OUT.ckpt``."""
    out = Path(out)
    for path in (out, checkpoint_path(out)) if checkpoint else (out,):
        _check_not_special(path)
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist")
    for src in inputs:
        if src is not None and _same_file(out, Path(src)):
            raise UsageError(f"--out {out} is also an input ({src}); write the result to another file")
    _check_writable(out.parent)
    return out


def checkpoint_path(out: Path) -> Path:
    """Where a training run that writes ``out`` keeps its checkpoint."""
    return out.with_name(out.name + ".ckpt")


def _check_not_special(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # absent (or unreachable, which the write will report)
    if stat.S_ISDIR(mode):
        raise UsageError(f"--out {path} is a directory; give a file path ending in .safetensors")
    if not stat.S_ISREG(mode):
        raise UsageError(f"--out {path} is a {file_kind(mode)}; give a regular file path (it would be replaced)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _check_writable(folder: Path) -> None:
    if os.access(folder, os.W_OK | os.X_OK):
        return
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    why = "read-only file system" if read_only else "permission denied"
    raise WriteError(f"cannot write into {folder}: {why}")


class Saved(NamedTuple):
    """What ``save`` wrote: the file and the manifest in it (with its ``tensors_sha256``)."""

    path: Path
    manifest: Manifest


def seal(manifest: Manifest, tensors: dict[str, torch.Tensor]) -> Manifest:
    """A copy of ``manifest`` whose ``tensors_sha256`` is the digest of ``tensors`` (``manifest`` is frozen)."""
    return manifest.model_copy(update={"tensors_sha256": tensors_digest(tensors)})


def save(path: str | Path, manifest: Manifest, tensors: dict[str, torch.Tensor]) -> Saved:
    """Write atomically; returns the path and the manifest written: ``manifest`` sealed with the tensors'
    digest (``manifest`` itself is not changed)."""
    from safetensors.torch import save_file

    path = check_output_path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    manifest = seal(manifest, tensors)
    metadata = manifest_metadata(manifest.model_dump_json())
    return Saved(atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata)), manifest)


# ----------------------------------------------------------------------------------------------------------


class Artifact:
    """A loaded, validated artifact."""

    def __init__(self, path: Path, manifest: Manifest, tensors: dict[str, torch.Tensor], sha256: str):
        self.path, self.manifest, self.tensors, self.sha256 = path, manifest, tensors, sha256

    @property
    def kind(self) -> str:
        return self.manifest.kind

    def parent_ref(self) -> ParentRef:
        return ParentRef(kind=self.kind, sha256=self.sha256, path=str(self.path))

    def ann_skeleton(self) -> nn.Module:
        """The timm network of the manifest with its activation, untrained weights."""
        m = self.manifest.model
        try:
            return apply_act(build_model(m.name, m.num_classes, m.in_chans, m.kwargs), m.act)
        except UsageError as e:
            raise ArtifactError(f"{self.path}: its manifest describes a model that cannot be built ({e})") from e

    def _check_runs(self, model: nn.Module, frames: int | None = None) -> nn.Module:
        """``model`` if it computes on the manifest's input size (``frames`` of it per sample: an event-encoded
        student); an ArtifactError if not (a forged manifest)."""
        size = tuple(self.manifest.model.input_size)
        size = size if frames is None else (frames, *size)
        problem = forward_problem(model, size)
        if problem is not None:
            raise ArtifactError(f"{self.path}: the model its manifest describes cannot run on its own input size "
                                f"{tuple(self.manifest.model.input_size)} ({problem})")
        return model

    def build_ann(self) -> nn.Module:
        """The ANN with the artifact's weights: a teacher, or a surrogate-trained student with its neurons as
        ReLU again."""
        if self.manifest.spiking is not None and self.manifest.spiking.method != "surrogate":
            raise UsageError(f"{self.path} is a converted IF network (BatchNorm folded); it has no ANN form")
        model = self.ann_skeleton()
        _load_checked(model, self.tensors, self.path)
        return self._check_runs(model)

    def build(self) -> nn.Module:
        """A teacher's timm model, or a student's SpikingNet, with the artifact's weights, in eval mode."""
        model = self.ann_skeleton()
        spec = self.manifest.spiking
        if spec is not None:
            try:
                model = make_spiking(model, spec, self.manifest.model.input_size)
            except UsageError as e:
                raise ArtifactError(f"{self.path}: its manifest describes a student that cannot be built ({e})") from e
        _load_checked(model.body if spec is not None else model, self.tensors, self.path)
        return self._check_runs(model.eval(), spec.T if spec is not None and spec.encoding == "event" else None)


def verify(path: str | Path) -> Artifact:
    """`load` plus what every loading stage checks next: the model the manifest describes builds, takes every
    tensor (names, shapes, dtypes) and runs on its own input size. What `inspect` reports on."""
    art = load(path)
    art.build()
    return art


def _load_checked(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise ArtifactError(f"{path}: tensors do not match the model its manifest describes ({what})")
    for k, ref in expected.items():
        t = tensors[k]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise ArtifactError(f"{path}: tensor {k!r} is {t.dtype}{list(t.shape)}, the model expects "
                                f"{ref.dtype}{list(ref.shape)}")
    model.load_state_dict(tensors)


def load(path: str | Path, expect: Literal["teacher", "student"] | None = None) -> Artifact:
    """Read and validate an artifact. ``expect`` refuses the other kind with a UsageError."""
    path = Path(path)
    manifest = read_manifest(path, expect)
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for every malformed file
        raise ArtifactError(f"{path}: cannot read tensors ({str(e).splitlines()[0][:200]})") from e
    if tensors_digest(tensors) != manifest.tensors_sha256:
        raise ArtifactError(f"{path}: tensor data does not match the manifest's sha256 (modified or corrupt file)")
    return Artifact(path, manifest, tensors, file_sha256(path))
