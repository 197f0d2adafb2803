"""The torch-free half of reading an artifact: the bounded safetensors header, the manifest it carries
(validated, upgraded, its model options checked) and the tensors' digest over the stored bytes. `inspect`
runs on this alone; `enofctl.artifacts` adds the tensors and the model they build (torch)."""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from enofctl.config.model_kwargs import check_recorded_kwargs
from enofctl.errors import ArtifactError, UsageError
from enofctl.io import loads_bounded, regular_file
from enofctl.schema import Manifest, upgrade

METADATA_KEY = "enofctl"
DIGEST_KEY = "enofctl.manifest_sha256"  # sha256 of the manifest JSON, which holds the tensors' sha256
MAX_HEADER_BYTES = 16 * 1024 * 1024  # a manifest plus a few thousand tensor entries fit easily
# safetensors' dtype codes, as torch names them (what `artifacts.tensors_digest` hashes), with their widths
DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
          "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
          "U16": ("uint16", 2), "U32": ("uint32", 4), "U64": ("uint64", 8), "BOOL": ("bool", 1),
          "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_metadata(text: str) -> dict[str, str]:
    """The safetensors metadata that carries a manifest's JSON ``text`` and its sha256."""
    return {METADATA_KEY: text, DIGEST_KEY: hashlib.sha256(text.encode()).hexdigest()}


def read_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header, bounded and checked against the file's size."""
    try:
        size = regular_file(path).st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ArtifactError(f"{path} is not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n + 8 > size:
                raise ArtifactError(f"{path} is not a safetensors file, or is truncated (bad header length)")
            header = loads_bounded(f.read(n))
    except ValueError as e:  # bad UTF-8, bad JSON, too deep, too long a number
        raise ArtifactError(f"{path} is not a safetensors file (header {_reason(e)})") from e
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror}") from e
    if not isinstance(header, dict):
        raise ArtifactError(f"{path} is not a safetensors file (header is not an object)")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ArtifactError(f"{path} is not a valid safetensors file (bad entry {name!r})")
        end = max(end, offsets[1])
    if 8 + n + end != size:
        raise ArtifactError(f"{path} is truncated or has trailing bytes ({size} bytes, header says {8 + n + end})")
    return header


def _reason(e: ValueError) -> str:
    """Why untrusted JSON was refused, e.g. "is not JSON", "refused: JSON nested deeper than 64 levels"."""
    if isinstance(e, UnicodeDecodeError):
        return "is not UTF-8"
    return "is not JSON" if type(e).__name__ == "JSONDecodeError" else f"refused: {e}"


def read_manifest(path: Path, expect: Literal["teacher", "student"] | None = None) -> Manifest:
    """The validated manifest of the artifact at ``path`` (header and manifest checked, tensors not read).
    ``expect`` refuses the other kind with a UsageError."""
    path = Path(path)
    regular_file(path)
    header = read_header(path)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        raise ArtifactError(f"{path} is a safetensors file but not an enofctl artifact (no manifest)")
    text = meta[METADATA_KEY]
    if not isinstance(text, str) or meta.get(DIGEST_KEY) != hashlib.sha256(text.encode()).hexdigest():
        raise ArtifactError(f"{path}: manifest does not match its sha256 (modified or corrupt file)")
    try:
        raw = loads_bounded(text)
    except ValueError as e:
        why = "" if type(e).__name__ == "JSONDecodeError" else f" ({_reason(e)})"
        raise ArtifactError(f"{path}: manifest is not valid JSON{why}") from e
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path}: manifest is not a JSON object")
    try:
        manifest = Manifest.model_validate(upgrade(raw))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        raise ArtifactError(f"{path}: invalid manifest at {where}: {err['msg']}") from e
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from e
    for key, value in manifest.model.kwargs.items():  # never a file, URL or hub id for timm to read
        try:
            check_recorded_kwargs({key: value})
        except UsageError as e:
            raise ArtifactError(f"{path}: manifest field model.kwargs.{key} refused: {e}") from e
    if expect is not None and manifest.kind != expect:
        raise UsageError(f"{path} is a {manifest.kind} artifact; a {expect} is expected here")
    return manifest


def stored_digest(path: Path) -> str:
    """`artifacts.tensors_digest` of the tensors stored at ``path``, computed from their bytes (no torch); an
    ArtifactError for an entry that is not a tensor safetensors can hold."""
    header = read_header(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        for name in sorted(k for k in header if k != "__metadata__"):
            entry = header[name]
            dtype, shape, (start, end) = entry.get("dtype"), entry.get("shape"), entry["data_offsets"]
            if dtype not in DTYPES or not (isinstance(shape, list) and all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
                raise ArtifactError(f"{path}: cannot read tensors (entry {name!r} has no valid dtype and shape)")
            torch_name, width = DTYPES[dtype]
            if end - start != math.prod(shape) * width or start < 0:
                raise ArtifactError(f"{path}: cannot read tensors (entry {name!r}: {end - start} bytes for "
                                    f"{dtype}{shape})")
            h.update(f"{name}|torch.{torch_name}|{tuple(shape)}|".encode())
            f.seek(8 + n + start)
            h.update(f.read(end - start))
    return h.hexdigest()


def check_stored(path: Path, manifest: Manifest) -> None:
    """The stored tensors are those the manifest was sealed with (its ``tensors_sha256``)."""
    if stored_digest(path) != manifest.tensors_sha256:
        raise ArtifactError(f"{path}: tensor data does not match the manifest's sha256 (modified or corrupt file)")
