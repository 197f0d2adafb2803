"""Accuracy against training time, from the histories `distill` records (epoch 0 = before the first step).

    python benchmarks/time_to_student.py --teacher T.safetensors --out docs/time_to_student.png \\
        "calibrated start=runs/a_s0.safetensors,runs/a_s1.safetensors" "plain start=runs/b_s0.safetensors,..."

Each positional argument is ``LABEL=ARTIFACT[,ARTIFACT...]`` (one artifact per seed). Plots every seed's test
top-1 after each epoch against its cumulative training time (``train_seconds``, evaluation excluded), with the
teacher's accuracy as a line, and prints a markdown table (mean and spread over the seeds at each epoch).
"""

from __future__ import annotations

import argparse
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from enofctl import artifacts  # noqa: E402


def _curve(path: str) -> list[tuple[int, float, float]]:
    """(epoch, train seconds, test top-1 %) of each history row of a distill artifact."""
    rows = artifacts.load(path, expect="student").manifest.history
    return [(int(r["epoch"]), float(r.get("train_seconds", 0.0)), 100 * float(r["test_top1"])) for r in rows
            if r.get("test_top1") is not None]


def _spread(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.2f}" + (f" +- {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="LABEL=ARTIFACT[,ARTIFACT...]")
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", required=True, help="PNG to write")
    a = p.parse_args()
    teacher = 100 * artifacts.load(a.teacher, expect="teacher").manifest.metrics.top1
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher ({teacher:.2f} %)")
    ax.axhspan(teacher - 1, teacher, color="grey", alpha=0.15, label="within 1 point of the teacher")
    print("| start | epoch | train time s | test top-1 % | vs teacher |")
    print("|---|---|---|---|---|")
    for i, spec in enumerate(a.runs):
        label, _, paths = spec.partition("=")
        curves = [_curve(path) for path in paths.split(",")]
        for j, c in enumerate(curves):
            ax.plot([s for _, s, _ in c], [t for _, _, t in c], marker="o", color=f"C{i}",
                    label=label if j == 0 else None, alpha=0.9)
        for e in sorted({e for c in curves for e, _, _ in c}):
            pts = [(s, t) for c in curves for ee, s, t in c if ee == e]
            accs = [t for _, t in pts]
            print(f"| {label} | {e} | {statistics.mean(s for s, _ in pts):.0f} | {_spread(accs)} | "
                  f"{statistics.mean(accs) - teacher:+.2f} |")
    ax.set_xlabel("distill training time (s, evaluation excluded)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Time to a good student")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
