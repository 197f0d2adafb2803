"""Accuracy against training time, from the histories `distill` records (epoch 0 = before the first step).

    python benchmarks/time_to_student.py --teacher T.safetensors --out docs/time_to_student.png \\
        "calibrated start=runs/a_s0.safetensors,runs/a_s1.safetensors" "plain start=runs/b_s0.safetensors,..."

Each positional argument is ``LABEL=ARTIFACT[,ARTIFACT...]`` (seeds, and runs of other budgets:
``--limit-train N`` images per epoch). Plots test top-1 against cumulative training time (``train_seconds``,
evaluation excluded) for every history row, a line through the mean of each budget and epoch, the teacher's
accuracy as a line, and prints a markdown table (mean and spread at each budget and epoch).
"""

from __future__ import annotations

import argparse
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from enofctl import artifacts  # noqa: E402


def _points(path: str) -> list[tuple[tuple[int, int], float, float]]:
    """((training images per epoch, epoch), train seconds, test top-1 %) of each history row of a distill
    artifact; epoch 0 (before the first step) is keyed (0, 0) whatever the budget."""
    m = artifacts.load(path, expect="student").manifest
    budget = m.config.get("limit_train") or 0
    out = []
    for r in m.history:
        if r.get("test_top1") is None:
            continue
        e = int(r["epoch"])
        out.append(((0, 0) if e == 0 else (budget, e), float(r.get("train_seconds", 0.0)), 100 * float(r["test_top1"])))
    return out


def _spread(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.2f}" + (f" +- {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="LABEL=ARTIFACT[,ARTIFACT...]")
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", required=True, help="PNG to write")
    a = p.parse_args()
    teacher = 100 * artifacts.load(a.teacher, expect="teacher").manifest.metrics.top1
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    print("| start | training images x epochs | train time s (mean) | test top-1 % | vs teacher | runs |")
    print("|---|---|---|---|---|---|")
    for i, spec in enumerate(a.runs):
        label, _, paths = spec.partition("=")
        pts = [pt for path in paths.split(",") for pt in _points(path)]
        groups: dict[tuple[int, int], list[tuple[float, float]]] = {}
        for key, sec, acc in pts:
            groups.setdefault(key, []).append((sec, acc))
        line = sorted((statistics.mean(s for s, _ in v), statistics.mean(t for _, t in v), k)
                      for k, v in groups.items())
        for ax in axes:
            ax.scatter([s for _, s, _ in pts], [t for _, _, t in pts], color=f"C{i}", s=14, alpha=0.6)
            ax.plot([s for s, _, _ in line], [t for _, t, _ in line], marker="o", color=f"C{i}", label=label)
        for sec, _, key in line:
            accs = [t for _, t in groups[key]]
            what = "before training" if key == (0, 0) else f"{key[0] or 'all'} x {key[1]}"
            print(f"| {label} | {what} | {sec:.0f} | {_spread(accs)} | {statistics.mean(accs) - teacher:+.2f} | "
                  f"{len(accs)} |")
    for ax, title in zip(axes, ("Time to a good student", "the same, near the teacher"), strict=True):
        ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher ({teacher:.2f} %)")
        ax.axhspan(teacher - 1, teacher, color="grey", alpha=0.15, label="within 1 point of the teacher")
        ax.set_xlabel("distill training time (s, evaluation excluded)")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(teacher - 12, teacher + 1)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
