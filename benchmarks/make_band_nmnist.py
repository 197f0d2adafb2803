"""A small set in N-MNIST's published layout (Train/ and Test/, a folder per class of 40-bit .bin files) where
class k's events lie in horizontal band k and drift right over 300 ms: learnable in a few steps, and small
enough that a teacher takes few optimizer steps (the case where BatchNorm's moving averages never converge).

    python benchmarks/make_band_nmnist.py OUT [--train 40] [--test 12]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def write_bin(path: Path, x, y, t, p) -> None:
    """40 bits per event: x (8), y (8), polarity (1), timestamp in us (23), big-endian."""
    path.parent.mkdir(parents=True, exist_ok=True)
    b = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], 1).astype(np.uint8)
    path.write_bytes(b.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=40, help="recordings per class")
    ap.add_argument("--test", type=int, default=12)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    for split, n in (("Train", a.train), ("Test", a.test)):
        for c in range(10):
            for i in range(n):
                t = np.sort(rng.integers(0, 300_000, 400))
                x = np.clip((t / 300_000 * 30).astype(int) + rng.integers(0, 4, 400), 0, 33)
                y = np.clip(3 * c + rng.integers(0, 3, 400), 0, 33)
                write_bin(a.out / split / str(c) / f"{i:05d}.bin", x, y, t, rng.integers(0, 2, 400))


if __name__ == "__main__":
    main()
