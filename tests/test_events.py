"""Event-camera data: the published file formats written here from their descriptions and read back through
tonic's readers, events -> frames, the frame cache, event encoding in the student and the teacher, the
operation count of event input, and bad input. Skipped without tonic (``pip install -e ".[events]"``)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from enofctl.errors import DataError
from enofctl.schema import FrameSpec

pytest.importorskip("tonic", reason="event datasets need tonic: pip install -e '.[events]'")

from enofctl import events  # noqa: E402
from enofctl.data import load_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ENOFCTL_CACHE", str(cache))
    return cache


# ----------------------------------------------------------------------------------------------------------
# writers of the published formats (from their public descriptions, not from any reader)


def write_nmnist(path: Path, x, y, t, p) -> None:
    """N-MNIST .bin: 40 bits per event: x (8), y (8), polarity (1), timestamp in us (23), big-endian."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = bytearray()
    for xi, yi, ti, pi in zip(x, y, t, p, strict=True):
        out += bytes([xi, yi, (pi << 7) | ((ti >> 16) & 0x7F), (ti >> 8) & 0xFF, ti & 0xFF])
    path.write_bytes(bytes(out))


def write_aedat2(path: Path, x, y, t, p) -> None:
    """AEDAT 2.0 (jAER, CIFAR10-DVS): '#' header lines, then big-endian (uint32 address, uint32 timestamp);
    DVS128 address: y in bits 1-7... as tonic's read_dvs_128 reads it: x = bits 8-14, y = bits 1-7, p = bit 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = b"".join(struct.pack(">II", (xi << 8) | (yi << 1) | pi, ti) for xi, yi, ti, pi in zip(x, y, t, p,
                                                                                              strict=True))
    path.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n" + body)


def _packet(etype: int, events: list[tuple[int, int]], ts_overflow: int = 0) -> bytes:
    """An AEDAT 3.1 packet: 28-byte header (type, source, event size, TS offset, TS overflow, capacity,
    number, valid; little-endian) and 8-byte events (uint32 data, int32 timestamp)."""
    n = len(events)
    head = struct.pack("<hhiiiiii", etype, 1, 8, 4, ts_overflow, n, n, n)
    return head + b"".join(struct.pack("<Ii", d, ts) for d, ts in events)


def write_aedat31(path: Path, x, y, t, p, special: bool = True) -> None:
    """AEDAT 3.1 (DVS128 Gesture): polarity event data = valid bit 0, polarity bit 1, y bits 2-16, x bits 17-31."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pol = [((xi << 17) | (yi << 2) | (pi << 1) | 1, ti) for xi, yi, ti, pi in zip(x, y, t, p, strict=True)]
    half = len(pol) // 2
    body = (_packet(0, [(0x1234, 0)]) if special else b"") + _packet(1, pol[:half]) + _packet(1, pol[half:])
    path.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n" + body)


def _ioheader(description: str) -> bytes:
    """AEDAT 4's IOHeader as a FlatBuffer (identifier 'IOHE'): table {compression: int32 (0 = NONE),
    dataTablePosition: int64 (-1 = no data table: packets run to the end of the file), description: string}.
    Offsets are little-endian and counted from where they are stored; a vtable's field offsets from the table."""
    desc = description.encode() + b"\0"
    return (struct.pack("<I4s", 24, b"IOHE")      # 0: root table at 24; identifier
            + struct.pack("<5H", 10, 20, 4, 8, 16)  # 8: vtable: its size, the table's, the 3 fields' offsets
            + b"\0" * 6                            # 18: padding, so the table's int64 lands on 8 bytes
            + struct.pack("<iiqI", 16, 0, -1, 4)    # 24: table: vtable at 24 - 16; NONE; -1; string at 40 + 4
            + struct.pack("<I", len(desc) - 1) + desc + b"\0" * (-len(desc) % 4))


def _event_packet(x, y, t, p) -> bytes:
    """A size-prefixed EventPacket FlatBuffer (identifier 'EVTS'): table {elements: [Event]}, Event a 16-byte
    struct (t int64 us, x int16, y int16, on bool, 3 bytes padding)."""
    evs = b"".join(struct.pack("<qhh?3x", ti, xi, yi, pi) for xi, yi, ti, pi in zip(x, y, t, p, strict=True))
    buf = (struct.pack("<I4s", 16, b"EVTS")     # 4 (after the size): root table at 4 + 16; identifier
           + struct.pack("<3H", 6, 8, 4)        # 12: vtable: its size, the table's, the field's offset
           + b"\0" * 2                         # 18: padding, so the table lands on 4 bytes
           + struct.pack("<iI", 8, 4)           # 20: table: vtable at 20 - 8; vector at 24 + 4
           + struct.pack("<I", len(evs) // 16) + evs)  # 28: the vector's length, its structs from 32
    return struct.pack("<I", len(buf)) + buf


def write_aedat4(path: Path, x, y, t, p, packets: int = 2) -> None:
    """AEDAT 4.0 (iniVation DV; CIFAR10-DVS as tonic's authors converted it): the version line, int32 size +
    IOHeader (its XML describes stream 0: polarity events 'EVTS' of a 128x128 sensor), then packets of
    (int32 stream id, int32 size, EventPacket), uncompressed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    xml = ('<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
           '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
           '<attr key="compression" type="string">NONE</attr>'
           '<attr key="typeIdentifier" type="string">EVTS</attr>'
           '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
           '<attr key="sizeX" type="int">128</attr><attr key="sizeY" type="int">128</attr>'
           '<attr key="source" type="string">DVS128</attr></node></node></node></dv>')
    head = _ioheader(xml)
    out = b"#!AER-DAT4.0\r\n" + struct.pack("<i", len(head)) + head
    cuts = [len(x) * k // packets for k in range(packets + 1)]
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        packet = _event_packet(x[a:b], y[a:b], t[a:b], p[a:b])
        out += struct.pack("<ii", 0, len(packet)) + packet
    path.write_bytes(out)


def _events(rng, n, size, duration=300_000):
    x, y = rng.integers(0, size, n), rng.integers(0, size, n)
    t, p = np.sort(rng.integers(0, duration, n)), rng.integers(0, 2, n)
    return [list(map(int, a)) for a in (x, y, t, p)]


def make_nmnist(root: Path, per_class: int = 2, size: int = 34, seed: int = 0) -> Path:
    """A tiny N-MNIST tree; class c's events all lie in columns around 3c (learnable)."""
    rng = np.random.default_rng(seed)
    for split in ("Train", "Test"):
        for c in range(10):
            for i in range(per_class):
                x, y, t, p = _events(rng, 300, size)
                x = [min(size - 1, 3 * c + xi % 4) for xi in x]
                write_nmnist(root / split / str(c) / f"{i:05d}.bin", x, y, t, p)
    return root


# ----------------------------------------------------------------------------------------------------------
# readers


def test_nmnist_bin_read_back_through_tonic(tmp_path) -> None:
    x, y, t, p = [0, 33, 5], [1, 2, 33], [10, 70_000, 8_388_000], [1, 0, 1]
    write_nmnist(tmp_path / "a.bin", x, y, t, p)
    ev = events.read_nmnist(tmp_path / "a.bin")
    assert (ev.x.tolist(), ev.y.tolist(), ev.t.tolist(), ev.p.tolist()) == (x, y, t, p)


def test_aedat2_read_back_through_tonic(tmp_path) -> None:
    x, y, t, p = [0, 127, 64], [5, 0, 127], [3, 40, 2**31 + 5], [0, 1, 1]
    write_aedat2(tmp_path / "a.aedat", x, y, t, p)
    ev = events.read_aedat(tmp_path / "a.aedat")
    assert (ev.x.tolist(), ev.y.tolist(), ev.t.tolist(), ev.p.tolist()) == (x, y, t, p)


def test_aedat31_keeps_polarity_packets_only(tmp_path) -> None:
    x, y, t, p = [0, 127, 64, 3], [5, 0, 127, 9], [3, 40, 50, 60], [0, 1, 1, 0]
    write_aedat31(tmp_path / "a.aedat", x, y, t, p)
    ev = events.read_aedat(tmp_path / "a.aedat")
    assert (ev.x.tolist(), ev.y.tolist(), ev.t.tolist(), ev.p.tolist()) == (x, y, t, p)


def test_aedat4_read_back_through_tonic_and_aedat(tmp_path) -> None:
    pytest.importorskip("aedat", reason="AEDAT 4 files need the aedat package: pip install -e '.[events]'")
    x, y, t, p = [0, 127, 64, 3, 9], [5, 0, 127, 9, 9], [3, 40, 2**33 + 50, 2**33 + 60, 2**33 + 61], [0, 1, 1, 0, 1]
    write_aedat4(tmp_path / "a.aedat4", x, y, t, p)
    ev = events.read_aedat(tmp_path / "a.aedat4")
    assert (ev.x.tolist(), ev.y.tolist(), ev.t.tolist(), ev.p.tolist()) == (x, y, t, p)
    (tmp_path / "a.aedat4").write_bytes((tmp_path / "a.aedat4").read_bytes()[:-5])
    with pytest.raises(DataError, match="not a readable AEDAT 4 file"):
        events.read_aedat(tmp_path / "a.aedat4")


def test_nmnist_layout_loads_as_frames(tmp_path) -> None:
    root = make_nmnist(tmp_path / "nm")
    data = load_dataset("nmnist", root, frames=FrameSpec(T=3))
    assert data.train.x.shape == (20, 3, 2, 34, 34) and data.train.x.dtype == torch.uint8
    assert sorted(data.train.y.tolist()) == sorted(list(range(10)) * 2)
    assert data.info.in_chans == 2 and data.frames.T == 3
    # frame sums: every event is in exactly one frame
    ev = events.read_nmnist(sorted((root / "Train" / "0").iterdir())[0])
    assert int(data.train.x[0].sum()) == len(ev)
    x, y = next(data.train.batches(4))
    assert x.shape == (4, 3, 2, 34, 34) and x.dtype == torch.float32


def test_cifar10_dvs_layout_split_and_downsampling(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for c in events.CIFAR10_CLASSES:
        for i in range(3):
            write_aedat2(tmp_path / "c10" / c / f"cifar10_{c}_{i}.aedat", *_events(rng, 200, 128))
    data = load_dataset("cifar10-dvs", tmp_path / "c10", frames=FrameSpec(T=2, size=(16, 16)))
    assert data.train.x.shape == (20, 2, 2, 16, 16) and data.test.x.shape == (10, 2, 2, 16, 16)
    assert data.info.image_size == (16, 16)
    assert int(data.test.x.sum()) == 10 * 200  # merged pixels add up; no event lost


def test_cifar10_dvs_aedat4_layout_frames_exact(tmp_path) -> None:
    pytest.importorskip("aedat", reason="AEDAT 4 files need the aedat package: pip install -e '.[events]'")
    # per class c, two files (the 10% test split leaves one for train, one for test); in each, 3 events in the
    # first half of the recording (frame 0) and 3 in the second (frame 1), two of them on the same pixel
    t0 = 2**32  # microseconds past 32 bits
    t = [t0, t0 + 100, t0 + 200, t0 + 2_600, t0 + 2_700, t0 + 4_999]
    for c, name in enumerate(events.CIFAR10_CLASSES):
        for k in range(2):
            x, y = [c, 127, 64, 10 + k, 10 + k, 0], [0, 5 + c, 127, 20, 20, 100 + k]
            p = [1, 0, 1, 0, 0, 1]
            write_aedat4(tmp_path / "c10" / name / f"cifar10_{name}_{k}.aedat4", x, y, t, p)
    data = load_dataset("cifar10-dvs", tmp_path / "c10", frames=FrameSpec(T=2))
    assert data.train.x.shape == data.test.x.shape == (10, 2, 2, 128, 128)
    assert data.train.y.tolist() == data.test.y.tolist() == list(range(10))
    for k, split in enumerate((data.train, data.test)):
        for c in range(10):
            want = torch.zeros(2, 2, 128, 128, dtype=torch.uint8)  # [T, polarity, y, x]
            want[0, 1, 0, c] = want[0, 0, 5 + c, 127] = want[0, 1, 127, 64] = 1
            want[1, 0, 20, 10 + k] = 2
            want[1, 1, 100 + k, 0] = 1
            assert torch.equal(split.x[c], want), (k, c)


def test_dvs_gesture_layout_cuts_labelled_gestures(tmp_path) -> None:
    rng = np.random.default_rng(0)
    base = tmp_path / "DvsGesture"
    for name, split in (("user01_fluorescent", "train"), ("user24_led", "test")):
        write_aedat31(base / f"{name}.aedat", *_events(rng, 400, 128, duration=2_000_000))
        (base / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,900000\n"
                                                 "11,1000000,1900000\n")
        (base / f"trials_to_{split}.txt").write_text(f"{name}.aedat\n")
    data = load_dataset("dvs-gesture", tmp_path, frames=FrameSpec(T=4, size=(32, 32)))
    assert data.train.y.tolist() == [0, 10] and data.test.y.tolist() == [0, 10]
    assert data.train.x.shape == (2, 4, 2, 32, 32)


def test_frames_by_time_and_by_count() -> None:
    ev = events.Events(np.array([0, 1, 2, 3]), np.zeros(4, int), np.array([0, 1, 2, 99]), np.array([1, 1, 0, 1]))
    by_time = events.to_frames(ev, (1, 4), FrameSpec(T=2))  # [T, polarity, H, W]; t = 0, 1, 2 | 99
    assert by_time[0, 1, 0].tolist() == [1, 1, 0, 0] and by_time[0, 0, 0].tolist() == [0, 0, 1, 0]
    assert by_time[1, 1, 0].tolist() == [0, 0, 0, 1] and by_time[1, 0].sum() == 0
    by_count = events.to_frames(ev, (1, 4), FrameSpec(T=2, bins="count"))
    assert by_count[0].sum() == 2 and by_count[1].sum() == 2


def test_frames_are_cached_and_reused(tmp_path, monkeypatch, _cache) -> None:
    root = make_nmnist(tmp_path / "nm", per_class=1)
    first = load_dataset("nmnist", root, frames=FrameSpec(T=2))
    assert len(list(_cache.glob("nmnist-*.pt"))) == 2

    def refuse(path):
        raise AssertionError("read again despite the cache")

    monkeypatch.setattr(events, "read_nmnist", refuse)
    again = load_dataset("nmnist", root, frames=FrameSpec(T=2))
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.test.y, again.test.y)


def test_augmentation_shifts_every_frame_of_a_sample_alike(tmp_path) -> None:
    from enofctl.augment import Augment

    data = load_dataset("nmnist", make_nmnist(tmp_path / "nm", per_class=1), frames=FrameSpec(T=3))
    g = torch.Generator().manual_seed(0)
    x, _ = next(data.train.batches(20, augment=Augment(), generator=g))
    raw = data.train.x.float()
    assert len(x) == len(raw) == 10
    for i in range(10):  # each sample: one crop offset for all its frames
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if torch.equal(torch.roll(raw[i], (dy, dx), (-2, -1))[..., 2:-2, 2:-2], x[i][..., 2:-2, 2:-2])]
        assert shifts, i


# ----------------------------------------------------------------------------------------------------------
# bad input: one clear DataError


def test_missing_folder_says_what_to_put_where(tmp_path) -> None:
    with pytest.raises(DataError, match="Train/ and Test/"):
        load_dataset("nmnist", tmp_path)
    with pytest.raises(DataError, match="trials_to_train.txt"):
        load_dataset("dvs-gesture", tmp_path)
    with pytest.raises(DataError, match="class folder"):
        load_dataset("cifar10-dvs", tmp_path)


def test_empty_class_folder(tmp_path) -> None:
    root = make_nmnist(tmp_path / "nm", per_class=1)
    for f in (root / "Train" / "7").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"Train/7 holds no \.bin"):
        load_dataset("nmnist", root)


def test_truncated_and_corrupt_files(tmp_path) -> None:
    root = make_nmnist(tmp_path / "nm", per_class=1)
    f = next((root / "Test" / "3").iterdir())
    f.write_bytes(f.read_bytes()[:-2])
    with pytest.raises(DataError, match="truncated"):
        load_dataset("nmnist", root)
    write_aedat31(tmp_path / "g.aedat", [1, 2], [1, 2], [1, 2], [0, 1])
    (tmp_path / "g.aedat").write_bytes((tmp_path / "g.aedat").read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        events.read_aedat(tmp_path / "g.aedat")
    write_aedat2(tmp_path / "c.aedat", [1], [1], [1], [0])
    (tmp_path / "c.aedat").write_bytes((tmp_path / "c.aedat").read_bytes() + b"\x00\x01\x02")
    with pytest.raises(DataError, match="truncated"):
        events.read_aedat(tmp_path / "c.aedat")
    (tmp_path / "junk.aedat").write_bytes(b"\x00\x01not an aedat file")
    with pytest.raises(DataError, match="AEDAT"):
        events.read_aedat(tmp_path / "junk.aedat")


def test_T_larger_than_the_recording_allows(tmp_path) -> None:
    ev = events.Events(np.array([0, 1]), np.zeros(2, int), np.array([0, 5]), np.array([1, 1]))
    with pytest.raises(DataError, match="lower --T"):
        events.to_frames(ev, (1, 4), FrameSpec(T=3, bins="count"))
    with pytest.raises(DataError, match="6 us recording"):
        events.to_frames(ev, (1, 4), FrameSpec(T=7))
