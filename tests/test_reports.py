"""`eval --report` for one T and for a sweep: what report.md says, which run the per-layer figures and the
top-level figures come from, the inputs of the plots, and an ablation of one seed."""

from __future__ import annotations

import pytest

from enofctl import plots
from enofctl.errors import UsageError
from enofctl.ops import LayerOps
from enofctl.report import Report, markdown, tables, what_rows, write_report
from enofctl.stages.ablate import AblateConfig, AblationResult, Cell, summarize
from enofctl.stages.evaluate import EvalResult, EvalRun, LayerActivity, headline_run


def _run(T: int | None, top1: float, spikes: float | None = None) -> EvalRun:
    layers = [] if T is None else [LayerActivity(name=f"act{i}", neurons=10, firing_rate=0.1 * T / 8,
                                                 spikes_per_sample=spikes / 2, silent=0.0, saturated=0.0)
                                   for i in range(2)]
    ops = [LayerOps(name="conv", type="conv", input_kind="analog", sops_per_sample=0, macs_per_sample=100,
                    energy_pj_per_sample=460),
           LayerOps(name="fc", type="linear", input_kind="spikes", sops_per_sample=10 * (T or 1),
                    macs_per_sample=0, energy_pj_per_sample=9 * (T or 1))]
    return EvalRun(T=T, top1=top1, top5=1.0, samples=360, spikes_per_sample=spikes, mean_firing_rate=None,
                   firing_rates={x.name: x.firing_rate for x in layers}, layers=layers, sops=10, macs=100,
                   energy_pj=469, ann_energy_pj=1000, energy_ratio=0.469, classifier="fc", ops=ops,
                   ann_ops=ops if T is not None else [])


def _result(kind: str, runs: list[EvalRun], file: str, own_T: int | None = None) -> EvalResult:
    head = headline_run(runs, own_T)
    return EvalResult(artifact=f"runs/{file}.safetensors", sha256="0" * 64, kind=kind, model="resnet20",
                      dataset="digits", top1=head.top1, top5=head.top5, samples=head.samples, T=head.T,
                      spikes_per_sample=head.spikes_per_sample, firing_rates=head.firing_rates, sops=head.sops,
                      macs=head.macs, energy_pj=head.energy_pj, energy_ratio=head.energy_ratio, e_mac=4.6,
                      e_ac=0.9, runs=runs)


TEACHER = _result("teacher", [_run(None, 0.99)], "t")
SWEEP = _result("student", [_run(T, acc, 1000.0 * T) for T, acc in ((1, 0.87), (2, 0.93), (4, 0.97), (8, 0.98))],
                "s", own_T=4)
ONE_T = _result("student", [_run(4, 0.97, 4000.0)], "s", own_T=4)


def test_top_level_is_the_students_own_T_and_at_names_the_run() -> None:
    assert (SWEEP.T, SWEEP.top1) == (4, 0.97)
    assert SWEEP.at(8).top1 == 0.98
    with pytest.raises(UsageError, match="evaluated at T = 1, 2, 4, 8, not at T = 16"):
        SWEEP.at(16)
    assert headline_run(SWEEP.runs, own_T=3).T == 8  # not evaluated at its own T: the largest


def test_report_says_what_was_evaluated() -> None:
    md = markdown(Report(results=[TEACHER, SWEEP]), [])
    assert "digits test split, 360 samples" in md
    rows = what_rows([TEACHER, SWEEP])
    assert rows[0][1:6] == ["t.safetensors", "teacher", "resnet20", "digits", "360"]
    assert rows[1][0] == "student resnet20" and rows[1][6:] == ["1, 2, 4, 8", "4"]
    assert "Per-layer activity: student resnet20 (T=4)" in md


@pytest.mark.parametrize("layers_at,expect", [(None, 4), (8, 8), (2, 2), (16, 4)])
def test_per_layer_tables_at_the_chosen_T(layers_at: int | None, expect: int) -> None:
    titles = [t for t, _, _ in tables([TEACHER, SWEEP], layers_at)]
    assert f"Per-layer activity: student resnet20 (T={expect})" in titles
    assert plots.layer_run(SWEEP, layers_at).T == expect


def test_labels_are_artifact_kinds_and_models_with_the_file_when_ambiguous() -> None:
    assert plots.artifact_label(SWEEP, [TEACHER, SWEEP]) == "student resnet20"
    other = SWEEP.model_copy(update={"artifact": "runs/s2.safetensors"})
    assert plots.artifact_label(other, [SWEEP, other]) == "student resnet20 (s2)"


def test_accuracy_axis_stays_within_0_and_100() -> None:
    assert plots.accuracy_limits([99.0]) == (97.0, 100.0)
    assert plots.accuracy_limits([1.0, 50.0]) == (0.0, pytest.approx(54.9))


@pytest.mark.parametrize("student", [ONE_T, SWEEP], ids=["one T", "sweep"])
def test_report_files_for_one_T_and_a_sweep(tmp_path, student: EvalResult) -> None:
    folder = write_report([TEACHER, student], tmp_path / "rep")
    made = {p.name for p in folder.iterdir()}
    assert {"report.md", "report.json", "accuracy_vs_T.png", "firing_rate.png", "energy_per_layer.png"} <= made
    assert all((folder / n).read_bytes()[:4] == b"\x89PNG" for n in made if n.endswith(".png"))


def _ablation(seeds: list[int]) -> AblationResult:
    cells = [Cell(grid="enof", variant=v, T=T, seed=s, artifact="x", top1=acc + 0.01 * s, spikes_per_sample=100 * T,
                  seconds=0) for v, T, acc in (("baseline", 2, 0.80), ("both", 2, 0.85), ("both", 4, 0.9))
             for s in seeds]
    return AblationResult(teacher="t", teacher_top1=0.95, test_samples=360,
                          config=AblateConfig(T=[2, 4], seeds=seeds), cells=cells,
                          rows=summarize(cells, teacher_top1=0.95))


def test_ablation_plot_one_seed_has_no_error_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    calls = []
    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", lambda self, *a, **kw: calls.append(kw) or
                        real(self, *a, **kw))
    assert plots.ablation(_ablation([0]))[:4] == b"\x89PNG"
    assert calls and all("yerr" not in kw for kw in calls)
    calls.clear()
    titles = []
    real_title = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda self, t, *a, **kw: titles.append(t) or
                        real_title(self, t, *a, **kw))
    plots.ablation(_ablation([0, 1]))
    assert all("yerr" in kw for kw in calls)
    # the error bars are the 95 % CIs, not the standard deviation: t_0.975,1 * s / sqrt(2), s = 0.01 / sqrt(2)
    half = 100 * 12.7062 * 0.005
    assert calls[0]["yerr"] == [[pytest.approx(half, rel=1e-4)], [pytest.approx(half, rel=1e-4)]]
    assert "error bars: 95 % CIs" in titles[-1]


def test_accuracy_plot_legend_leaves_the_axes_for_many_students(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to two students: the legend in the lower-right corner; more: below the axes (it covered points)."""
    import matplotlib.axes

    placed = []
    real = matplotlib.axes.Axes.legend
    monkeypatch.setattr(matplotlib.axes.Axes, "legend", lambda self, *a, **kw: placed.append(kw) or
                        real(self, *a, **kw))
    others = [_result("student", SWEEP.runs, f"s{i}", own_T=4) for i in range(3)]
    assert plots.accuracy_vs_T([TEACHER, SWEEP])[:4] == b"\x89PNG"
    assert placed[-1]["loc"] == "lower right"
    assert plots.accuracy_vs_T([TEACHER, *others])[:4] == b"\x89PNG"
    assert placed[-1]["loc"] == "upper center" and placed[-1]["bbox_to_anchor"][1] < 0


def test_accuracy_and_spikes_on_two_panels_energy_on_a_linear_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    """accuracy_vs_T: top-1 (with the teacher's line) and spikes on two panels over one T axis, not two
    unrelated y-axes of one panel; energy_per_layer: bars on a linear axis (a log axis makes bar heights lie)."""
    figures = []
    real = plots._png
    monkeypatch.setattr(plots, "_png", lambda plt, fig: figures.append(fig) or real(plt, fig))
    plots.accuracy_vs_T([TEACHER, SWEEP])
    top, bottom = figures[-1].axes
    assert top.get_ylabel().startswith("top-1") and bottom.get_ylabel() == "spikes per image"
    assert top.get_shared_x_axes().joined(top, bottom) and top.bbox.y0 > bottom.bbox.y1  # stacked, not twinned
    assert len(top.get_lines()) == 2 and len(bottom.get_lines()) == 1  # the teacher's line is with the top-1
    plots.energy_per_layer([TEACHER, SWEEP])
    assert [a.get_yscale() for a in figures[-1].axes] == ["linear"]
