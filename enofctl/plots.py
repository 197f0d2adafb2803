"""PNG plots of `enofctl eval --report`: firing rate per layer, accuracy vs T, energy per layer."""

from __future__ import annotations

import io
from pathlib import Path

from enofctl.schema.ablation import AblationResult
from enofctl.schema.report import EvalResult, EvalRun


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


def artifact_label(r: EvalResult, among: list[EvalResult] | None = None) -> str:
    """An artifact's name in tables, legends and titles: what it is, ``teacher resnet20`` / ``student resnet20``,
    with its file name when that alone would not tell it from another of ``among``."""
    name = f"{r.kind} {r.model}"
    same = [x for x in among or [] if f"{x.kind} {x.model}" == name]
    return f"{name} ({Path(r.artifact).name.removesuffix('.safetensors')})" if len(same) > 1 else name


def layer_run(r: EvalResult, layers_at: int | None = None) -> EvalRun:
    """The run whose per-layer figures are shown: at ``layers_at`` when evaluated, else at the result's top-level
    T (the student's own T, or the largest evaluated)."""
    return next((run for run in r.runs if layers_at is not None and run.T == layers_at), r.at(r.T))


def firing_rates(results: list[EvalResult], layers_at: int | None = None) -> bytes | None:
    students = [(r, layer_run(r, layers_at)) for r in results if layer_run(r, layers_at).layers]
    if not students:
        return None
    names = [x.name for x in students[0][1].layers]
    plt, fig, ax = _figure(max(8.0, 0.35 * len(names) + 2), 4.8)
    width = 0.8 / len(students)
    for i, (r, run) in enumerate(students):
        rates = {x.name: 100 * x.firing_rate for x in run.layers}
        xs = [j + (i - (len(students) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [rates.get(n, 0.0) for n in names], width, label=f"{artifact_label(r, results)} (T={run.T})")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("firing rate (% of neurons per step)")
    ax.set_xlabel("spiking layer")
    ax.set_title("Firing rate per spiking layer")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def accuracy_limits(values: list[float]) -> tuple[float, float]:
    """The accuracy axis (%): around the values with a margin of at least 2 points, never outside [0, 100]."""
    lo, hi = min(values), max(values)
    pad = max(2.0, 0.1 * (hi - lo))
    return max(0.0, lo - pad), min(100.0, hi + pad)


def accuracy_vs_T(results: list[EvalResult]) -> bytes | None:
    """Two panels over the same T axis: top-1 (the teachers' top-1 as horizontal lines) above, spikes per image
    below, one color per student; a single T gives markers only (no line to draw)."""
    students = [r for r in results if r.kind == "student"]
    if not students:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, sharex=True, figsize=(8.0, 6.5), dpi=110, height_ratios=(3, 2))
    accuracies = []
    for i, r in enumerate(students):
        Ts, color = [run.T for run in r.runs], f"C{i % 10}"
        accuracies += [100 * run.top1 for run in r.runs]
        ls = "-" if len(Ts) > 1 else "none"  # one T: markers only, in the plot and in the legend
        ax.plot(Ts, [100 * run.top1 for run in r.runs], marker="o", ls=ls, color=color, markersize=7,
                label=artifact_label(r, results))
        ax2.plot(Ts, [run.spikes_per_sample for run in r.runs], marker="s", ls=ls, color=color, markersize=6)
    styles = [":", "-.", (0, (1, 3)), (0, (5, 2))]
    for i, r in enumerate(x for x in results if x.kind == "teacher"):
        accuracies.append(100 * r.top1)
        ax.axhline(100 * r.top1, color=("gray", "black")[i % 2], ls=styles[i % len(styles)],
                   label=f"{artifact_label(r, results)} (ANN)")
    all_T = sorted({run.T for r in students for run in r.runs})
    ax2.set_xscale("log", base=2)
    ax2.set_xlim(all_T[0] / 1.5, all_T[-1] * 1.5)
    ax2.set_xticks(all_T, [str(t) for t in all_T])
    ax2.minorticks_off()
    ax.set_ylim(*accuracy_limits(accuracies))
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("time steps T")
    ax.set_ylabel("top-1 accuracy (%)")
    ax2.set_ylabel("spikes per image")
    ax.set_title("Accuracy and activity vs. time steps" if len(all_T) > 1 else
                 f"Accuracy and activity at T = {all_T[0]} (evaluate several T, e.g. --T 1,2,4,8, for a curve)")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    entries = len(ax.get_legend_handles_labels()[1])
    if len(students) <= 2:  # a few entries fit in the corner the curves usually leave free
        ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
        return _png(plt, fig)
    # more would cover points: below the panels, in two columns, the figure grown to hold them
    fig.set_figheight(fig.get_figheight() + 0.22 * ((entries + 1) // 2))
    ax2.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    return _png(plt, fig)


def energy_per_layer(results: list[EvalResult], layers_at: int | None = None) -> bytes | None:
    students = [(r, layer_run(r, layers_at)) for r in results if r.kind == "student"]
    if not students:
        return None
    ref = students[0][1]
    names = [o.name for o in ref.ann_ops]
    plt, fig, ax = _figure(max(8.0, 0.35 * len(names) + 2), 4.8)
    series = [("ANN (same network)", {o.name: o.energy_pj_per_sample for o in ref.ann_ops})]
    series += [(f"{artifact_label(r, results)} (T={run.T})", {o.name: o.energy_pj_per_sample for o in run.ops})
               for r, run in students]
    width = 0.8 / len(series)
    for i, (label, energy) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [energy.get(n, 0.0) / 1e3 for n in names], width, label=label)
    ax.set_xticks(range(len(names)), [f"{n} (RepAct)" if n == ref.classifier and ref.repact_macs is not None
                                      else n for n in names], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("energy per image (nJ)")  # a linear axis: a bar's height is its energy
    ax.set_xlabel("layer (conv / linear)")
    ax.set_title(f"Energy per layer: MACs x {students[0][0].e_mac} pJ + SOPs x {students[0][0].e_ac} pJ")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def all_plots(results: list[EvalResult], layers_at: int | None = None) -> dict[str, bytes]:
    made = {
        "firing_rate.png": firing_rates(results, layers_at),
        "accuracy_vs_T.png": accuracy_vs_T(results),
        "energy_per_layer.png": energy_per_layer(results, layers_at),
    }
    return {k: v for k, v in made.items() if v is not None}


def ablation(result: AblationResult) -> bytes:
    """Accuracy vs. spikes per sample of every ablation row, with the rows' confidence intervals (Student t over
    the seeds, ``config.ci``) as error bars (none for one seed); the legend sits beside the axes, so it covers no
    point."""
    plt, fig, ax = _figure(11.0, 5.0)
    seeds = len(result.config.seeds)
    variants = list(dict.fromkeys((r.grid, r.variant) for r in result.rows))  # color: the variant
    Ts = sorted({r.T for r in result.rows})  # marker: T
    markers = "os^Dvp*h"
    accuracies = []
    for r in result.rows:
        spread = {}
        if r.top1_lo is not None and r.spikes_lo is not None:  # asymmetric-ready: [[below], [above]]
            spread = {"xerr": [[r.spikes_mean - r.spikes_lo], [r.spikes_hi - r.spikes_mean]],
                      "yerr": [[100 * (r.top1_mean - r.top1_lo)], [100 * (r.top1_hi - r.top1_mean)]], "capsize": 3}
        accuracies += [100 * v for v in (r.top1_mean, r.top1_lo, r.top1_hi) if v is not None]  # bars inside
        ax.errorbar(r.spikes_mean, 100 * r.top1_mean, fmt=markers[Ts.index(r.T) % len(markers)],
                    color=f"C{variants.index((r.grid, r.variant)) % 10}", label=f"{r.grid}: {r.variant} (T={r.T})",
                    markersize=7, **spread)
    if result.teacher_top1 is not None:
        accuracies.append(100 * result.teacher_top1)
        ax.axhline(100 * result.teacher_top1, color="gray", ls=":", label="teacher (ANN)")
    ax.set_ylim(*accuracy_limits(accuracies))
    ax.set_xlabel("spikes per sample")
    ax.set_ylabel("top-1 accuracy (%)")
    level = f"{100 * result.config.ci:g} %"
    ax.set_title("Ablation: accuracy vs. activity " + (f"(mean over {seeds} seeds; error bars: {level} CIs)"
                                                        if seeds > 1 else "(1 seed: no interval, no error bars)"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _png(plt, fig)
