"""A simulated event-camera dataset made offline from Fashion-MNIST, written in N-MNIST's published layout.

N-MNIST (Orchard et al. 2015) was recorded by moving a DVS sensor in three saccades in front of MNIST digits
on a screen. This script does the same in simulation, so the event pipeline can be run end to end on a
machine where no event dataset can be downloaded. It is NOT N-MNIST and its accuracies are not comparable
with published N-MNIST or DVS results.

For each image (28x28, placed in the middle of a 34x34 sensor, N-MNIST's size):

- the image moves along three straight saccades forming a triangle (vertices at offsets (-1.5, -1.5),
  (0, +1.5), (+1.5, -1.5) pixels, back to the start), 100 ms each, rendered with bilinear interpolation
  every 4 ms (75 steps, 300 ms);
- each pixel keeps a reference log intensity ``log(0.05 + I)``; whenever the current log intensity differs
  from it by a contrast threshold C (per pixel, drawn from N(0.25, 0.03), clipped to [0.15, 0.35]), it emits
  one event per threshold crossed (ON if brighter, OFF if darker, at most 6 per step, timestamps spread
  evenly within the step) and moves its reference by as many thresholds (the usual DVS model);
- a few background-activity events (Poisson, 20 per recording on average) at random pixels and times.

Events are written as N-MNIST ``.bin`` files (5 bytes each: x, y, polarity bit and a 23-bit microsecond
timestamp) under ``OUT/Train/<class>/`` and ``OUT/Test/<class>/``, which `enofctl --dataset nmnist
--data-dir OUT` reads with tonic's ``read_mnist_file``.

    python benchmarks/make_dvs_fmnist.py OUT --train 3000 --test 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SENSOR = 34
STEPS_PER_SACCADE, STEP_US = 25, 4000
VERTICES = [(-1.5, -1.5), (0.0, 1.5), (1.5, -1.5), (-1.5, -1.5)]  # (dx, dy) pixels, a closed triangle
MAX_PER_STEP = 6
NOISE_EVENTS = 20.0


def write_nmnist_bin(path: Path, x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> None:
    """N-MNIST's 40-bit events: x, y, then polarity (bit 7) and the timestamp's bits 22-16, 15-8, 7-0."""
    t = t.astype(np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("timestamps must fit 23 bits")
    raw = np.empty((len(t), 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p.astype(np.int64) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    path.write_bytes(raw.tobytes())


def offsets() -> np.ndarray:
    """The image's (dx, dy) at each rendering step: [steps + 1, 2] (the first row is the start)."""
    path = [np.array(VERTICES[0])]
    for a, b in zip(VERTICES[:-1], VERTICES[1:], strict=True):
        for k in range(1, STEPS_PER_SACCADE + 1):
            path.append(np.array(a) + (np.array(b) - np.array(a)) * k / STEPS_PER_SACCADE)
    return np.stack(path)


def render(images: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Images [N, 28, 28] in [0, 1] on the 34x34 sensor, shifted by (dx, dy) pixels (bilinear, zeros outside)."""
    m = 4  # margin beyond the largest shift
    pad = (SENSOR - images.shape[-1]) // 2 + m
    big = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))  # [N, 34 + 2m, 34 + 2m]
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy

    def at(sy: int, sx: int) -> np.ndarray:  # out[y, x] = image[y - sy, x - sx]
        return big[:, m - sy : m - sy + SENSOR, m - sx : m - sx + SENSOR]

    return ((1 - fy) * ((1 - fx) * at(iy, ix) + fx * at(iy, ix + 1))
            + fy * ((1 - fx) * at(iy + 1, ix) + fx * at(iy + 1, ix + 1)))


def simulate(images: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
    """DVS events (x, y, t, p) of each image ([N, 28, 28] in [0, 1]) moved along the saccades."""
    n = len(images)
    path = offsets()
    c = np.clip(rng.normal(0.25, 0.03, (n, SENSOR, SENSOR)), 0.15, 0.35)
    ref = np.log(0.05 + render(images, *path[0]))
    parts: list[np.ndarray] = []  # [5, events]: image, x, y, t, p
    for step in range(1, len(path)):
        cur = np.log(0.05 + render(images, *path[step]))
        d = cur - ref
        k = np.minimum(np.floor(np.abs(d) / c), MAX_PER_STEP).astype(np.int64)
        ref = ref + np.sign(d) * k * c
        img, yy, xx = np.nonzero(k)
        reps = k[img, yy, xx]
        pp = (d[img, yy, xx] > 0).astype(np.int64)
        img, yy, xx, pp = (np.repeat(a, reps) for a in (img, yy, xx, pp))
        j = np.arange(len(img)) - np.repeat(np.cumsum(reps) - reps, reps)  # 0..k-1 within each pixel
        tt = (step - 1) * STEP_US + ((j + 1) * STEP_US) // (np.repeat(reps, reps) + 1)
        parts.append(np.stack([img, xx, yy, tt, pp]))
    allev = np.concatenate(parts, axis=1)
    allev = allev[:, np.lexsort((allev[3], allev[0]))]  # by image, then time
    bounds = np.searchsorted(allev[0], np.arange(n + 1))
    out = []
    duration = (len(path) - 1) * STEP_US
    for i in range(n):
        m = rng.poisson(NOISE_EVENTS)
        noise = np.stack([rng.integers(0, SENSOR, m), rng.integers(0, SENSOR, m), rng.integers(0, duration, m),
                          rng.integers(0, 2, m)])
        ev = np.concatenate([allev[1:, bounds[i] : bounds[i + 1]], noise], axis=1)
        ev = ev[:, np.argsort(ev[2], kind="stable")]
        out.append(tuple(ev))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=3000, help="first N Fashion-MNIST training images")
    ap.add_argument("--test", type=int, default=1000, help="first N test images")
    ap.add_argument("--src", default=None, help="Fashion-MNIST IDX folder (default: enofctl's lookup)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from enofctl.data import load_dataset

    data = load_dataset("fashion-mnist", args.src)
    rng = np.random.default_rng(args.seed)
    t0, counts = time.perf_counter(), []
    for split, folder, n in (("train", "Train", args.train), ("test", "Test", args.test)):
        part = data.train if split == "train" else data.test
        x, y = part.x[:n], part.y[:n]
        for c in range(10):
            (args.out / folder / str(c)).mkdir(parents=True, exist_ok=True)
        for start in range(0, len(y), 500):
            events = simulate(x[start : start + 500, 0].double().numpy(), rng)
            for i, ev in enumerate(events):
                write_nmnist_bin(args.out / folder / str(int(y[start + i])) / f"{start + i:05d}.bin", *ev)
                counts.append(len(ev[0]))
    info = {"source": "Fashion-MNIST (simulated DVS events; not N-MNIST)", "train": args.train, "test": args.test,
            "seed": args.seed, "events_per_sample_mean": float(np.mean(counts)),
            "events_per_sample_min": int(np.min(counts)), "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "simulated.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
