"""The calibrated student before any training, in the BatchNorm mode it is evaluated in (running statistics)
and the one `distill` trains it in by default (batch statistics of training-sized batches), for calibration
variants. Usage:

    python benchmarks/calibrated_start.py TEACHER.safetensors [--T 4] [--seeds 0 1 2] [--batch 64]

Prints one JSON line per (variant, seed) and a summary table (mean over seeds) to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from enofctl import artifacts
from enofctl.data import load_dataset
from enofctl.stages.common import accuracy, batches_on
from enofctl.stages.convert import SurrogateConvertConfig, convert_teacher
from enofctl.stages.loop import train_mode

VARIANTS = {
    "channel buffers (0.1.x)": dict(fold=False, bn_reestimate=False, reconstruct=0),
    "folded, no reconstruction": dict(fold=True, reconstruct=0),
    "folded + 100 reconstruction steps": dict(fold=True, reconstruct=100),
    "folded + 200 reconstruction steps (default)": dict(fold=True),
    "folded + 200 steps of 128 images": dict(fold=True, reconstruct_batch=128),
    "folded + 200 steps of 32 images": dict(fold=True, reconstruct_batch=32),
    "folded + 100 steps of 32 images": dict(fold=True, reconstruct=100, reconstruct_batch=32),
    "folded + 400 reconstruction steps": dict(fold=True, reconstruct=400),
    "folded + BN re-estimated": dict(fold=True, bn_reestimate=True, reconstruct=0),
    "folded + BN re-est., teacher head": dict(fold=True, bn_reestimate=True, readout_ridge=None, reconstruct=0),
}


@torch.no_grad()
def batch_mode_top1(model, split, mean, std, batch: int, seed: int) -> float:
    """top-1 with BatchNorm normalizing each batch by its own statistics (as in training), shuffled batches."""
    g = torch.Generator().manual_seed(seed)
    train_mode(model)
    right = n = 0
    for x, y in batches_on(split, torch.device("cpu"), mean, std, batch_size=batch, shuffle=True, generator=g):
        right += int((model(x).argmax(1) == y).sum())
        n += len(y)
    model.eval()
    return right / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("teacher")
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t = artifacts.load(args.teacher, expect="teacher")
    spec = t.manifest.model
    data = load_dataset(t.manifest.data.dataset, t.manifest.data.data_dir)
    rows: dict[str, list[tuple[float, float]]] = {}
    for name in args.variants:
        for seed in args.seeds:
            t0 = time.perf_counter()
            student, _ = convert_teacher(t, SurrogateConvertConfig(T=args.T, seed=seed, **VARIANTS[name]))
            secs = time.perf_counter() - t0
            ev = accuracy(student, data.test, torch.device("cpu"), spec.mean, spec.std)["top1"]
            bm = batch_mode_top1(student, data.test, spec.mean, spec.std, args.batch, seed)
            rows.setdefault(name, []).append((ev, bm))
            print(json.dumps({"variant": name, "seed": seed, "eval_mode": ev, "batch_mode": bm,
                              "convert_s": round(secs, 1)}), flush=True)
    print(f"\n| variant | running statistics (eval) | batch statistics (training mode, batch {args.batch}) |")
    print("|---|---|---|")
    for name, r in rows.items():
        ev = [100 * a for a, _ in r]
        bm = [100 * b for _, b in r]
        print(f"| {name} | {statistics.mean(ev):.2f} ({' / '.join(f'{v:.2f}' for v in ev)}) | "
              f"{statistics.mean(bm):.2f} ({' / '.join(f'{v:.2f}' for v in bm)}) |")


if __name__ == "__main__":
    main()
