"""Data time against step time for event data (after the first read): one training epoch's batches
(frames from the in-memory cache, float conversion, crop/flip, normalization) timed alone, against the
training time of the epoch that a `distill` or `teacher train` artifact recorded (history ``train_seconds``).

    python benchmarks/events_data_time.py STUDENT.safetensors --limit-train 2000 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from enofctl import artifacts
from enofctl.augment import Augment
from enofctl.data import load_dataset
from enofctl.stages.common import batches_on


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    m = artifacts.load(args.artifact).manifest
    t0 = time.perf_counter()
    data = load_dataset(m.data.dataset, m.data.data_dir, frames=m.data.frames)  # from the cache
    load_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    n = 0
    for x, _ in batches_on(data.train, torch.device("cpu"), m.model.mean, m.model.std, batch_size=args.batch_size,
                           shuffle=True, augment=Augment(), generator=g, limit=args.limit_train, drop_last=True):
        n += len(x)
    data_s = time.perf_counter() - t0
    rows = [r for r in m.history if r.get("epoch", 0) >= 1]
    epoch_s = rows[0]["train_seconds"]  # the first epoch's training time (data + steps)
    print(json.dumps({"artifact": args.artifact, "T": m.data.frames.T, "samples": n, "cache_load_s": round(load_s, 2),
                      "data_s_per_epoch": round(data_s, 2), "train_s_first_epoch": round(epoch_s, 1),
                      "data_fraction_of_step_time": round(data_s / max(epoch_s - data_s, 1e-9), 4)}))


if __name__ == "__main__":
    main()
