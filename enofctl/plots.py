"""PNG plots of `enofctl eval --report`: firing rate per layer, accuracy vs T, energy per layer."""

from __future__ import annotations

import io
from pathlib import Path

from enofctl.stages.ablate import AblationResult
from enofctl.stages.evaluate import EvalResult


def _figure(width: float = 8.0, height: float = 4.5):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def artifact_label(r: EvalResult) -> str:
    """An artifact's short name in tables, legends and titles: its file name without ``.safetensors``."""
    return Path(r.artifact).name.removesuffix(".safetensors")


def firing_rates(results: list[EvalResult]) -> bytes | None:
    students = [r for r in results if r.runs[0].layers]
    if not students:
        return None
    names = [x.name for x in students[0].runs[0].layers]
    plt, fig, ax = _figure(max(8.0, 0.35 * len(names) + 2), 4.8)
    width = 0.8 / len(students)
    for i, r in enumerate(students):
        rates = {x.name: 100 * x.firing_rate for x in r.runs[0].layers}
        xs = [j + (i - (len(students) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [rates.get(n, 0.0) for n in names], width, label=f"{artifact_label(r)} (T={r.runs[0].T})")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("firing rate (% of neurons per step)")
    ax.set_xlabel("spiking layer")
    ax.set_title("Firing rate per spiking layer")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def accuracy_vs_T(results: list[EvalResult]) -> bytes | None:
    students = [r for r in results if r.kind == "student"]
    if not students:
        return None
    plt, fig, ax = _figure()
    ax2 = ax.twinx()
    for r in students:
        Ts = [run.T for run in r.runs]
        line = ax.plot(Ts, [100 * run.top1 for run in r.runs], marker="o", label=f"{artifact_label(r)} top-1")[0]
        ax2.plot(Ts, [run.spikes_per_sample for run in r.runs], marker="s", ls="--", color=line.get_color(),
                 alpha=0.6, label=f"{artifact_label(r)} spikes/img")
    styles = [":", "-.", (0, (1, 3)), (0, (5, 2))]
    for i, r in enumerate(x for x in results if x.kind == "teacher"):
        ax.axhline(100 * r.top1, color=("gray", "black")[i % 2], ls=styles[i % len(styles)],
                   label=f"{artifact_label(r)} (ANN) top-1")
    ax.set_xscale("log", base=2)
    all_T = sorted({run.T for r in students for run in r.runs})
    ax.set_xticks(all_T, [str(t) for t in all_T])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("top-1 accuracy (%)")
    ax2.set_ylabel("spikes per image (dashed)")
    ax.set_title("Accuracy and activity vs. time steps")
    ax.grid(alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
    return _png(plt, fig)


def energy_per_layer(results: list[EvalResult]) -> bytes | None:
    students = [r for r in results if r.kind == "student"]
    if not students:
        return None
    ref = students[0].runs[0]
    names = [o.name for o in ref.ann_ops]
    plt, fig, ax = _figure(max(8.0, 0.35 * len(names) + 2), 4.8)
    series = [("ANN (same network)", {o.name: o.energy_pj_per_sample for o in ref.ann_ops})]
    series += [(f"{artifact_label(r)} (T={r.runs[0].T})", {o.name: o.energy_pj_per_sample for o in r.runs[0].ops})
               for r in students]
    width = 0.8 / len(series)
    for i, (label, energy) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [energy.get(n, 0.0) / 1e3 for n in names], width, label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [f"{n} (RepAct)" if n == ref.classifier and ref.repact_macs is not None
                                      else n for n in names], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("energy per image (nJ, log scale)")
    ax.set_xlabel("layer (conv / linear)")
    ax.set_title(f"Energy per layer: MACs x {students[0].e_mac} pJ + SOPs x {students[0].e_ac} pJ")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def all_plots(results: list[EvalResult]) -> dict[str, bytes]:
    made = {
        "firing_rate.png": firing_rates(results),
        "accuracy_vs_T.png": accuracy_vs_T(results),
        "energy_per_layer.png": energy_per_layer(results),
    }
    return {k: v for k, v in made.items() if v is not None}


def ablation(result: AblationResult) -> bytes:
    """Accuracy vs. spikes per sample of every ablation row, with the seed spread as error bars."""
    plt, fig, ax = _figure(9.0, 5.0)
    variants = list(dict.fromkeys((r.grid, r.variant) for r in result.rows))  # color: the variant
    Ts = sorted({r.T for r in result.rows})  # marker: T
    markers = "os^Dvp*h"
    for r in result.rows:
        ax.errorbar(r.spikes_mean, 100 * r.top1_mean, xerr=r.spikes_std, yerr=100 * r.top1_std,
                    fmt=markers[Ts.index(r.T) % len(markers)], color=f"C{variants.index((r.grid, r.variant)) % 10}",
                    label=f"{r.grid}: {r.variant} (T={r.T})", capsize=3, markersize=7)
    if result.teacher_top1 is not None:
        ax.axhline(100 * result.teacher_top1, color="gray", ls=":", label="teacher (ANN)")
    ax.set_xlabel("spikes per sample")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Ablation: accuracy vs. activity (mean +- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    return _png(plt, fig)
