"""Event-camera datasets (N-MNIST, CIFAR10-DVS, DVS128 Gesture) read from their published files, as frames.

Each recording becomes ``T`` frames of event counts ``[T, 2, H, W]`` (channel 0: OFF events, 1: ON events),
binned by time (T equal spans of the recording) or by event count (T runs of equally many events), with an
optional spatial downsampling (a sensor pixel ``(x, y)`` lands in ``(x * W // sensor_W, y * H // sensor_H)``;
merged pixels add up). A split's frames are computed on the first read, written atomically to a cache file
(keyed by the frame spec and every source file's name, size and modification time) and held in memory as
integer counts; batches are float ``[B, T, 2, H, W]``.

Files are read with `tonic`'s readers (the optional extra ``enofctl[events]``):

- N-MNIST ``.bin`` (40-bit events: x, y, polarity bit + 23-bit microsecond timestamp, overflow markers):
  ``tonic.io.read_mnist_file``;
- AEDAT 2.0 (CIFAR10-DVS ``.aedat``: big-endian 32-bit address + 32-bit timestamp, DVS128 addresses):
  ``tonic.io.read_aedat_header_from_file`` and ``get_aer_events_from_file``, decoded with the bit layout of
  ``tonic.io.read_dvs_128`` (x = bits 8-14, y = bits 1-7, polarity = bit 0), which in tonic 1.7 cannot be
  called itself (it unpacks the header reader's three values into two);
- AEDAT 3.1 (DVS128 Gesture): the header through tonic; the packets are walked here, keeping polarity packets
  (event type 1, 8-byte events, x = bits 17-30, y = bits 2-16, polarity = bit 1 as in ``read_dvs_ibm``),
  because tonic's packet reader decodes every packet as polarity events;
- AEDAT 4 (CIFAR10-DVS as converted by tonic's authors): ``tonic.io.read_aedat4`` (needs the ``aedat`` package).

Nothing is downloaded: a missing or incomplete folder is a `DataError` saying which files to put where.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from enofctl.augment import Augment
from enofctl.datasets.registry import CIFAR10_CLASSES, GESTURE_CLASSES, DatasetInfo, dataset, registered
from enofctl.datasets.tensors import Data, TensorSplit
from enofctl.errors import DataError
from enofctl.io import atomic_write
from enofctl.schema import FrameSpec

CACHE_FORMAT = 1  # bump when the frames a spec gives change

# the sensors, classes and default frames are registered in enofctl.datasets.registry; this view of the default
# frames is what enofctl.cli reads
DEFAULT_FRAMES: dict[str, FrameSpec] = {d.name: d.default_frames() for d in registered() if d.events}
CIFAR10_DVS_TEST = 0.1  # no published split: the last 10 % of each class's files (by name) are the test split


def cache_dir() -> Path:
    return Path(os.environ.get("ENOFCTL_CACHE", Path.home() / ".cache" / "enofctl" / "frames"))


@dataclass(frozen=True)
class Events:
    """One recording: coordinates, microsecond timestamps and polarity (0 OFF, 1 ON), int64 arrays."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def window(self, start: int, end: int) -> Events:
        keep = (self.t >= start) & (self.t < end)
        return Events(self.x[keep], self.y[keep], self.t[keep], self.p[keep])


def _tonic_io():
    try:
        import tonic.io
    except ImportError as e:
        raise DataError("reading event files needs tonic: pip install 'enofctl[events]'") from e
    return tonic.io


# ----------------------------------------------------------------------------------------------------------
# readers


def read_nmnist(path: Path) -> Events:
    """An N-MNIST ``.bin`` file (5 bytes per event), through ``tonic.io.read_mnist_file``."""
    size = path.stat().st_size
    if size % 5:
        raise DataError(f"{path} is truncated or not an N-MNIST .bin file ({size} bytes: not whole 5-byte events)")
    ev = _tonic_io().read_mnist_file(str(path), dtype=np.dtype([("x", np.int64), ("y", np.int64),
                                                                ("t", np.int64), ("p", np.int64)]))
    return _checked(Events(ev["x"], ev["y"], ev["t"], ev["p"]), dataset("nmnist").sensor, path)


def _aedat_header(path: Path) -> tuple[float, int]:
    try:
        version, start, _ = _tonic_io().read_aedat_header_from_file(str(path))
    except Exception as e:  # no header, an unparsable version line: many types
        raise DataError(f"{path} is not a readable AEDAT file (header: {type(e).__name__})") from e
    return version, start


def read_aedat(path: Path, sensor: tuple[int, int] = (128, 128)) -> Events:
    """A DVS128 recording in AEDAT 2.0 or 3.1 (``.aedat``) or AEDAT 4 (``.aedat4``)."""
    if path.suffix == ".aedat4":
        return _read_aedat4(path, sensor)
    version, start = _aedat_header(path)
    size = path.stat().st_size
    if 2 <= version < 3:
        if (size - start) % 8:
            raise DataError(f"{path} is truncated ({size - start} bytes of events: not whole 8-byte events)")
        raw = _tonic_io().get_aer_events_from_file(str(path), version, start)
        addr, t = raw["address"].astype(np.int64), raw["timeStamp"].astype(np.int64)
        ev = Events((addr >> 8) & 0x7F, (addr >> 1) & 0x7F, t, addr & 1)  # tonic's read_dvs_128 layout
    elif 3 <= version < 4:
        addr, t = _aedat3_polarity(path, start, size)
        ev = Events((addr >> 17) & 0x1FFF, (addr >> 2) & 0x1FFF, t, (addr >> 1) & 1)  # read_dvs_ibm's layout
    else:
        raise DataError(f"{path}: AEDAT version {version} is not supported here (2.x, 3.x, or .aedat4)")
    return _checked(ev, sensor, path)


def _aedat3_polarity(path: Path, start: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Addresses and timestamps of the polarity packets (type 1) of an AEDAT 3.1 file; each packet is a
    28-byte header (type, source, event size, TS offset, TS overflow, capacity, number, valid) + events."""
    raw = path.read_bytes()
    pos, addrs, stamps = start, [], []
    while pos < size:
        if pos + 28 > size:
            raise DataError(f"{path} is truncated (a packet header is cut off at byte {pos})")
        etype, _src, esize, _off, overflow, capacity, number, _valid = struct.unpack_from("<hhiiiiii", raw, pos)
        end = pos + 28 + esize * capacity
        if esize <= 0 or capacity < 0 or number > capacity or end > size:
            raise DataError(f"{path} is truncated or corrupt (packet at byte {pos} runs past the end)")
        if etype == 1:
            if esize != 8:
                raise DataError(f"{path} is corrupt (polarity events of {esize} bytes at byte {pos}, expected 8)")
            ev = np.frombuffer(raw, dtype="<u4", count=2 * number, offset=pos + 28).astype(np.int64)
            addrs.append(ev[0::2])
            stamps.append(ev[1::2] + (int(overflow) << 31))
        pos = end
    if not addrs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    addr = np.concatenate(addrs)
    valid = (addr & 1) == 1
    return addr[valid], np.concatenate(stamps)[valid]


def _read_aedat4(path: Path, sensor: tuple[int, int]) -> Events:
    try:
        import aedat  # noqa: F401  (what tonic.io.read_aedat4 needs)
    except ImportError as e:
        raise DataError(f"{path}: reading .aedat4 files needs the `aedat` package (pip install aedat)") from e
    try:
        ev = _tonic_io().read_aedat4(str(path))
    except Exception as e:  # the decoder's errors
        raise DataError(f"{path} is not a readable AEDAT 4 file ({str(e)[:120] or type(e).__name__})") from e
    return _checked(Events(ev["x"].astype(np.int64), ev["y"].astype(np.int64), ev["t"].astype(np.int64),
                           ev["on"].astype(np.int64) if "on" in ev.dtype.names else ev["p"].astype(np.int64)),
                    sensor, path)


def _checked(ev: Events, sensor: tuple[int, int], path: Path) -> Events:
    h, w = sensor
    if len(ev) and (ev.x.min() < 0 or ev.x.max() >= w or ev.y.min() < 0 or ev.y.max() >= h):
        raise DataError(f"{path} is corrupt (event coordinates outside the {w}x{h} sensor)")
    return ev


# ----------------------------------------------------------------------------------------------------------
# events -> frames


def to_frames(ev: Events, sensor: tuple[int, int], spec: FrameSpec, name: str = "a recording") -> np.ndarray:
    """Event counts ``[T, 2, H, W]`` (int64) of one recording (see the module docstring)."""
    T, n = spec.T, len(ev)
    if n == 0:
        raise DataError(f"{name} holds no events")
    order = np.argsort(ev.t, kind="stable")
    t = ev.t[order]
    if spec.bins == "count":
        if n < T:
            raise DataError(f"{name}: {n} events cannot fill T={T} frames of equally many events; lower --T")
        b = (np.arange(n) * T) // n
    else:
        span = int(t[-1] - t[0]) + 1
        if span < T:
            raise DataError(f"{name}: a {span} us recording cannot be cut into T={T} time frames; lower --T")
        b = ((t - t[0]) * T) // span
    sh, sw = sensor
    h, w = spec.size or sensor
    x, y, p = (ev.x[order] * w) // sw, (ev.y[order] * h) // sh, ev.p[order]
    flat = ((b * 2 + p) * h + y) * w + x
    return np.bincount(flat, minlength=T * 2 * h * w).reshape(T, 2, h, w)


# ----------------------------------------------------------------------------------------------------------
# the published layouts: (file, label, reader) per recording


@dataclass(frozen=True)
class Source:
    """One file and how to read its samples: ``read(path)`` -> [(events, label), ...]."""

    path: Path
    read: Callable[[Path], list[tuple[Events, int]]]


def _labelled(reader: Callable[[Path], Events], label: int) -> Callable[[Path], list[tuple[Events, int]]]:
    return lambda p: [(reader(p), label)]


def _class_files(folder: Path, classes: tuple[str, ...], suffixes: tuple[str, ...], what: str) -> list[list[Path]]:
    missing = [c for c in classes if not (folder / c).is_dir()]
    if missing:
        raise DataError(f"{what}: missing class folder {folder / missing[0]} (and {len(missing) - 1} more); "
                        f"put one folder per class ({', '.join(classes[:3])}, ...) of {'/'.join(suffixes)} files "
                        f"in {folder}")
    out = []
    for c in classes:
        files = sorted(f for f in (folder / c).iterdir() if f.suffix in suffixes and f.is_file())
        if not files:
            raise DataError(f"{what}: class folder {folder / c} holds no {'/'.join(suffixes)} files")
        out.append(files)
    return out


def _nmnist_sources(root: Path, split: str) -> list[Source]:
    folder = root / ("Train" if split == "train" else "Test")
    if not folder.is_dir():
        raise DataError(f"nmnist: {folder} not found; --data-dir must hold N-MNIST's Train/ and Test/ folders "
                        "(what Train.zip and Test.zip extract to: folders 0-9 of .bin files)")
    per_class = _class_files(folder, dataset("nmnist").info.classes, (".bin",), "nmnist")
    return [Source(f, _labelled(read_nmnist, c)) for c, files in enumerate(per_class) for f in files]


def _cifar10_dvs_sources(root: Path, split: str) -> list[Source]:
    if not root.is_dir():
        raise DataError(f"cifar10-dvs: {root} not found; --data-dir must hold CIFAR10-DVS's class folders "
                        f"({', '.join(CIFAR10_CLASSES[:3])}, ...) of .aedat (or .aedat4) files")
    per_class = _class_files(root, CIFAR10_CLASSES, (".aedat", ".aedat4"), "cifar10-dvs")
    out = []
    for c, files in enumerate(per_class):
        n_test = max(1, round(len(files) * CIFAR10_DVS_TEST)) if len(files) > 1 else 0
        part = files[len(files) - n_test:] if split == "test" else files[: len(files) - n_test]
        out += [Source(f, _labelled(read_aedat, c)) for f in part]
    return out


def _gesture_root(root: Path) -> Path:
    for cand in (root, root / "DvsGesture"):
        if (cand / "trials_to_train.txt").is_file():
            return cand
    raise DataError(f"dvs-gesture: no trials_to_train.txt in {root} or {root / 'DvsGesture'}; --data-dir must "
                    "hold what DvsGesture.tar.gz extracts to (user*.aedat, user*_labels.csv, trials_to_train.txt, "
                    "trials_to_test.txt)")


def read_gesture_trial(path: Path) -> list[tuple[Events, int]]:
    """A DVS128 Gesture recording cut into its labelled gestures (``_labels.csv``: class 1-11, start and end
    in microseconds)."""
    labels = path.with_name(path.stem + "_labels.csv")
    if not labels.is_file():
        raise DataError(f"dvs-gesture: {labels.name} is missing beside {path}")
    ev = read_aedat(path)
    out = []
    for line in labels.read_text().splitlines()[1:]:
        if not line.strip():
            continue
        try:
            cls, start, end = (int(float(v)) for v in line.split(","))
        except ValueError as e:
            raise DataError(f"{labels} is corrupt (line {line!r})") from e
        if not 1 <= cls <= len(GESTURE_CLASSES):
            raise DataError(f"{labels} is corrupt (class {cls} not in 1-{len(GESTURE_CLASSES)})")
        out.append((ev.window(start, end), cls - 1))
    if not out:
        raise DataError(f"dvs-gesture: {labels} lists no gestures")
    return out


def _gesture_sources(root: Path, split: str) -> list[Source]:
    base = _gesture_root(root)
    listing = base / ("trials_to_train.txt" if split == "train" else "trials_to_test.txt")
    if not listing.is_file():
        raise DataError(f"dvs-gesture: {listing} not found (DvsGesture.tar.gz holds it)")
    names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise DataError(f"dvs-gesture: {base / missing[0]} is missing ({len(missing)} of the {len(names)} "
                        f"recordings {listing.name} lists)")
    if not names:
        raise DataError(f"dvs-gesture: {listing} lists no recordings")
    return [Source(base / n, read_gesture_trial) for n in names]


_SOURCES = {"nmnist": _nmnist_sources, "cifar10-dvs": _cifar10_dvs_sources, "dvs-gesture": _gesture_sources}


# ----------------------------------------------------------------------------------------------------------
# frames of a split: computed once, cached on disk, held in memory


def _cache_path(name: str, split: str, spec: FrameSpec, sources: list[Source]) -> Path:
    h = hashlib.sha256(f"{CACHE_FORMAT}|{name}|{split}|{spec.model_dump_json()}".encode())
    for s in sources:
        st = s.path.stat()
        h.update(f"|{s.path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_dir() / f"{name}-{split}-T{spec.T}-{spec.bins}-{h.hexdigest()[:16]}.pt"


def read_split(name: str, root: Path, split: str, spec: FrameSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``[N, T, 2, H, W]`` (uint8, or int16 when a count exceeds 255) and labels ``[N]`` of a split,
    from the cache or (first read) from the files, then cached."""
    sources = _SOURCES[name](root, split)
    cached = _cache_path(name, split, spec, sources)
    if cached.is_file():
        try:
            got = torch.load(cached, weights_only=True)
            return got["x"], got["y"]
        except Exception:  # a damaged cache file is rebuilt from the sources
            pass
    sensor, frames, labels = dataset(name).sensor, [], []
    for s in sources:
        for i, (ev, label) in enumerate(s.read(s.path)):
            what = f"{s.path}" + (f" (gesture {i + 1})" if name == "dvs-gesture" else "")
            frames.append(to_frames(ev, sensor, spec, what))
            labels.append(label)
    arr = np.stack(frames)
    dtype = np.uint8 if arr.max() <= 255 else np.int16
    x = torch.from_numpy(np.minimum(arr, np.iinfo(dtype).max).astype(dtype))
    y = torch.tensor(labels, dtype=torch.long)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, lambda tmp: torch.save({"x": x, "y": y}, tmp))
    except OSError:
        pass  # a read-only cache: the frames are recomputed next time
    return x, y


class FrameSplit(TensorSplit):
    """An event split held in memory as integer counts ``[N, T, 2, H, W]``; batches are float
    ``[B, T, 2, H, W]``, augmented with one crop/flip per sample shared by all its frames."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo, frames: FrameSpec):
        super().__init__(x, y, info)
        self.frames = frames

    def subset(self, idx: torch.Tensor) -> FrameSplit:
        return FrameSplit(self.x[idx], self.y[idx], self.info, self.frames)

    def batches(self, batch_size, *, shuffle=False, augment: Augment | None = None, generator=None, limit=None,
                shard=(0, 1), drop_last=False):
        T, info = self.frames.T, self.info
        flat_info = replace(info, mean=info.mean * T, std=info.std * T)  # frames as channels: [B, T*C, H, W]
        for x, y in super().batches(batch_size, shuffle=shuffle, generator=generator, limit=limit, shard=shard,
                                    drop_last=drop_last):
            x = x.float()
            if augment is not None:
                x = augment.apply(x.flatten(1, 2), flat_info, generator).unflatten(1, (T, -1))
            yield x, y


def load_events(name: str, root: Path | None, spec: FrameSpec | None = None) -> Data:
    """An event dataset from its published layout under ``root`` as frames (see the module docstring)."""
    entry = dataset(name)
    info, spec = entry.info, spec or entry.default_frames()
    if root is None:
        raise DataError(f"{name}: pass --data-dir with the dataset's extracted files (see `enofctl datasets`)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{name}: --data-dir {root} does not exist")
    info = replace(info, image_size=tuple(spec.size or entry.sensor))
    splits = [FrameSplit(*read_split(name, root, s, spec), info, spec) for s in ("train", "test")]
    return Data(info, splits[0], splits[1], info.classes, frames=spec, root=root)


def load_registered(info: DatasetInfo, root: Path | None, download: bool, frames: FrameSpec | None) -> Data:
    """The event datasets' loader in the registry (nothing is downloaded)."""
    return load_events(info.name, root, frames)
