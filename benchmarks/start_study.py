"""Which start and fine-tuning recipe reaches the teacher soonest: students converted with each calibration
variant, then distilled with each recipe, several seeds; test top-1 after every epoch (history), in one run.

    python benchmarks/start_study.py TEACHER.safetensors --epochs 5 --seeds 0 1 2 --out runs/study.jsonl \\
        [--variants NAME ...] [--limit-test N]

Each variant is (conversion options, distill options); see VARIANTS. One JSON line per (variant, seed) with
the history's test top-1 per epoch (epoch 0 = before the first step) and the training seconds; then a table of
means with 95 % t-intervals over seeds (`enofctl.stats` when present, else the t quantile from scipy).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from enofctl import artifacts
from enofctl.data import load_dataset
from enofctl.stages.convert import SurrogateConvertConfig, convert_teacher
from enofctl.stages.distill import DistillConfig, DistillInputs, FrozenTeacher, distill_student

PLAIN = dict(calibrate=0)
CHANNEL = dict(fold=False, bn_reestimate=False, reconstruct=0)
FOLDED = dict(fold=True, bn_reestimate=True, reconstruct=0)  # as measured; the default is now bn_reestimate=False
VARIANTS: dict[str, tuple[dict, dict]] = {
    "plain copy, batch BN": (PLAIN, {}),
    "channel buffers, batch BN": (CHANNEL, {}),
    "folded, batch BN": (FOLDED, {}),
    "folded, frozen BN": (FOLDED, dict(bn="frozen")),
    "folded, batch BN, lr 0.01": (FOLDED, dict(lr=0.01)),
    "folded, frozen BN, lr 0.01": (FOLDED, dict(bn="frozen", lr=0.01)),
    "folded, frozen BN, lr 0.02": (FOLDED, dict(bn="frozen", lr=0.02)),
    "folded, frozen BN, lr 0.01, warm-up": (FOLDED, dict(bn="frozen", lr=0.01, warmup_steps=20)),
    "folded, batch BN, lr 0.02, warm-up": (FOLDED, dict(lr=0.02, warmup_steps=20)),
    "plain copy, batch BN, lr 0.01": (PLAIN, dict(lr=0.01)),
    "reconstructed (default), batch BN": (dict(fold=True, reconstruct=200), {}),
    "reconstructed (default), frozen BN": (dict(fold=True, reconstruct=200), dict(bn="frozen")),
}


def t95(n: int) -> float:
    try:
        from scipy.stats import t
        return float(t.ppf(0.975, n - 1))
    except ImportError:  # pragma: no cover
        return {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(n, 2.0)


def ci(xs: list[float]) -> str:
    m = statistics.mean(xs)
    if len(xs) < 2:
        return f"{m:.2f}"
    h = t95(len(xs)) * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{m:.2f} [{m - h:.2f}, {m + h:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("teacher")
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--limit-test", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_art = artifacts.load(args.teacher, expect="teacher")
    teacher = FrozenTeacher.of(t_art)
    data = load_dataset(t_art.manifest.data.dataset, t_art.manifest.data.data_dir)
    results: dict[str, list[dict]] = {}
    tmp = Path(tempfile.mkdtemp())
    for name in args.variants:
        conv, dist = VARIANTS[name]
        for seed in args.seeds:
            t0 = time.perf_counter()
            s_model, s_manifest = convert_teacher(t_art, SurrogateConvertConfig(T=args.T, seed=seed, **conv))
            path = tmp / f"s{seed}.safetensors"
            path.unlink(missing_ok=True)
            artifacts.save(path, s_manifest, s_model.body.state_dict())
            cfg = DistillConfig(epochs=args.epochs, seed=seed, workers=0, limit_test=args.limit_test, **dist)
            trained = distill_student(cfg, DistillInputs(teacher, data, artifacts.load(path, expect="student")))
            h = trained.manifest.history
            row = {"variant": name, "seed": seed, "top1": [100 * r["test_top1"] for r in h],
                   "train_seconds": [r.get("train_seconds", 0.0) for r in h],
                   "wall_s": round(time.perf_counter() - t0, 1)}
            results.setdefault(name, []).append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    teacher_top1 = 100 * t_art.manifest.metrics.top1
    print(f"\nteacher {teacher_top1:.2f} %; mean test top-1 % [95 % CI over {len(args.seeds)} seeds] after each "
          "epoch\n")
    print("| variant | " + " | ".join(f"epoch {e}" for e in range(args.epochs + 1)) + " |")
    print("|---|" + "---|" * (args.epochs + 1))
    for name, rows in results.items():
        cells = [ci([r["top1"][e] for r in rows]) for e in range(args.epochs + 1)]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
