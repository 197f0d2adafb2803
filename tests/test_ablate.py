"""`enofctl ablate`: the grids' cells, seeds, aggregation, outputs, and continuing an interrupted run."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import pytest
from clihelp import assert_one_error_line, ok, run

from enofctl import artifacts
from enofctl.errors import ArtifactError
from enofctl.report import ablation_markdown
from enofctl.schema import StudentMetrics
from enofctl.stages import DistillConfig
from enofctl.stages import ablate as ablate_mod
from enofctl.stages.ablate import AblateConfig, AblationResult, Cell, best_row, plan, summarize


def test_plan_covers_both_grids() -> None:
    cells = plan(AblateConfig(grid="both", T=[1, 4], seeds=[0, 1], train=DistillConfig(laf_lambda=0.3)))
    enof = [c for c in cells if c[0] == "enof"]
    activity = [c for c in cells if c[0] == "activity"]
    assert len(enof) == 4 * 2 * 2 and len(activity) == 4 * 2
    by = {(g, v, T, s): c for g, v, T, s, c in cells}
    assert by[("enof", "baseline", 1, 0)].laf_lambda == 0 and not by[("enof", "baseline", 1, 0)].repact
    assert by[("enof", "both", 4, 1)].laf_lambda == 0.3 and by[("enof", "both", 4, 1)].repact
    assert by[("enof", "+RepAct", 4, 0)].laf_lambda == 0 and by[("enof", "+RepAct", 4, 0)].repact
    assert {T for g, _, T, _, _ in cells if g == "activity"} == {4}  # the largest T
    assert by[("activity", "KD+act", 4, 0)].act_reg > 0 and by[("activity", "KD+act", 4, 0)].kd_alpha > 0
    assert by[("activity", "CE", 4, 0)].kd_alpha == 0 and by[("activity", "CE", 4, 0)].laf_lambda == 0


def test_plan_only_the_chosen_variants() -> None:
    cells = plan(AblateConfig(grid="both", T=[1, 4], seeds=[0, 1], variants=["both", "KD+act"]))
    assert {(g, v, T) for g, v, T, _, _ in cells} == {("enof", "both", 1), ("enof", "both", 4),
                                                      ("activity", "KD+act", 4)}
    with pytest.raises(ValueError, match="unknown variant 'KD\\+act2'"):
        AblateConfig(variants=["KD+act2"])


def test_summarize_mean_spread_and_change_vs_ce() -> None:
    def cell(variant, top1, spikes, seed):
        return Cell(grid="activity", variant=variant, T=4, seed=seed, artifact="x", top1=top1,
                    spikes_per_sample=spikes, seconds=0)

    rows = {r.variant: r for r in summarize([cell("CE", 0.9, 100, 0), cell("CE", 0.8, 120, 1),
                                             cell("KD+act", 0.85, 88, 0), cell("KD+act", 0.85, 77, 1)])}
    assert rows["CE"].top1_mean == pytest.approx(0.85) and rows["CE"].top1_std == pytest.approx(0.0707, abs=1e-4)
    assert rows["KD+act"].spikes_vs_ce_pct == pytest.approx(100 * (82.5 / 110 - 1))


def test_vs_teacher_best_row_and_markdown() -> None:
    cells = [Cell(grid="enof", variant=v, T=T, seed=0, artifact="x", top1=acc, spikes_per_sample=10, seconds=0)
             for v, T, acc in (("baseline", 4, 0.80), ("both", 4, 0.86), ("both", 2, 0.88))]
    rows = summarize(cells, teacher_top1=0.90)
    assert [(r.T, r.variant, round(r.vs_teacher, 6)) for r in rows] == [  # rows in the tables' order: T, variant
        (2, "both", -0.02), (4, "baseline", -0.1), (4, "both", -0.04)]
    result = AblationResult(teacher="t", teacher_top1=0.9, test_samples=1000,
                            config=AblateConfig(T=[2, 4], seeds=[0]), cells=cells, rows=rows)
    assert best_row(result).variant == "both" and best_row(result).T == 4  # at the largest T by default
    assert best_row(result, T=2).top1_mean == 0.88
    md = ablation_markdown(result)  # one seed: no interval printed, none claimed
    assert "90.00 % on 1,000 test samples" in md
    assert "| both | 4 | 86.00 (1 seed: no interval) | -4.00 | 10 (1 seed: no interval) |" in md
    assert "Best student at T = 4: both (enof), 86.00 % (1 seed: no interval), -4.00 points vs the teacher." in md
    assert "1 seed: no interval, so no verdict" in md and "CI] over" not in md
    two_cells = cells + [c.model_copy(update={"seed": 1, "top1": c.top1 + 0.02}) for c in cells]
    two = AblationResult(teacher="t", teacher_top1=0.9, test_samples=1000, config=AblateConfig(T=[2, 4], seeds=[0, 1]),
                         cells=two_cells, rows=summarize(two_cells, 0.90))
    md = ablation_markdown(two)
    h = 12.7062 * 0.01 * 2 ** 0.5 / 2 ** 0.5  # t_0.975,1 * s / sqrt(2), s = 0.02 / sqrt(2)
    assert f"| both | 4 | 87.00 [{87 - 100 * h:.2f}, {87 + 100 * h:.2f}] | -3.00 | 10 [10, 10] |" in md
    assert "Mean [95 % CI] over 2 seeds" in md
    assert f"both (enof), 87.00 % (95 % CI [{87 - 100 * h:.2f}, {87 + 100 * h:.2f}]), -3.00 points" in md


def test_time_left_is_weighted_by_T(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells cost time in proportion to T; a cell repeated in both grids is trained once."""
    clock, written = [0.0], {}

    def fake_load(path, expect=None):
        if path not in written:
            raise ArtifactError("not there")
        return written[path]

    def fake_train_cell(cfg, src, path):
        clock[0] += cfg.T  # one second per time step
        written[path] = SimpleNamespace(manifest=SimpleNamespace(
            metrics=StudentMetrics(top1=0.5, spikes_per_sample=1.0), config=cfg.model_dump()))
        return written[path].manifest

    monkeypatch.setattr(ablate_mod.artifacts, "load", fake_load)
    monkeypatch.setattr(ablate_mod, "train_cell", fake_train_cell)
    monkeypatch.setattr(ablate_mod.time, "perf_counter", lambda: clock[0])
    calls = []
    todo = plan(AblateConfig(grid="both", T=[1, 2], seeds=[0], train=DistillConfig(epochs=1)))
    (tmp_path / "runs").mkdir()
    cells = ablate_mod.run_cells(todo, None, tmp_path / "runs", on_cell=lambda *a: calls.append(a))
    assert calls[0][4] is None  # nothing trained yet
    # after the first cell (T = 1): 3 more T = 1 cells, 4 T = 2 cells and 3 new activity cells at T = 2
    assert calls[1][4] == pytest.approx(3 * 1 + 4 * 2 + 3 * 2)
    assert calls[-1][:2] == (12, 12) and calls[-1][4] == 0.0
    assert clock[0] == 4 * 1 + 4 * 2 + 3 * 2 and len(cells) == 12


def test_the_teacher_is_read_and_built_once(tiny_teacher, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Along a whole ablation the teacher file is read and hashed once and its network built once (each cell's
    student converted and calibrated from it; the reconstruction steps, which read nothing, are left out)."""
    t = tiny_teacher
    loads, builds = [], []
    real_load, real_build = artifacts.load, artifacts.Artifact.build

    def counting_load(path, expect=None):
        loads.append((str(path), expect))
        return real_load(path, expect)

    def counting_build(self):
        builds.append(self.kind)
        return real_build(self)

    monkeypatch.setattr(ablate_mod.artifacts, "load", counting_load)
    monkeypatch.setattr(artifacts.Artifact, "build", counting_build)
    cfg = AblateConfig(grid="enof", T=[1], seeds=[0], variants=["baseline", "+L_AF"],
                       train=DistillConfig(epochs=1, limit_train=32, limit_test=16, batch_size=16, device="cpu",
                                           reconstruct=0))
    with pytest.warns(ablate_mod.StageWarning, match="one seed gives no confidence interval"):
        result = ablate_mod.ablate(cfg, t, tmp_path / "abl")
    assert [expect for _, expect in loads].count("teacher") == 1  # the rest: cells looked up before training
    assert builds.count("teacher") == 1
    assert len(result.cells) == 2 and result.test_samples == 16


@pytest.mark.slow
def test_cli_ablate_writes_tables_and_resumes(tiny_teacher, tmp_path) -> None:
    """Both grids, two T and two seeds, two variants of each grid (10 cells to train, 1 epoch of 64 samples).
    The cells start from the plain copy of the teacher (--no-calibrate): calibrating and reconstructing each
    start would cost most of the time and show nothing about the tables (test_calibrate.py covers it)."""
    t = tiny_teacher
    out = tmp_path / "abl"
    args = ("ablate", "--teacher", t, "--grid", "both", "--T", "1,2", "--seeds", "0,1", "--epochs", "1",
            "--variants", "baseline,+L_AF,CE,KD", "--limit-train", "64", "--limit-test", "64", "--decay", "1",
            "--reset", "soft", "--v-init", "0.5", "--no-calibrate", "--out", out, "--quiet")
    code, stdout, stderr = run(*args)
    assert code == 0 and stdout.strip() == str(out / "ablation.md"), stderr
    assert stderr.splitlines() == ["enofctl: warning: --seeds: 2 seeds; ablation verdicts need 5 (intervals from "
                                   "fewer are wide and the MDE large)"]
    for name in ("ablation.md", "ablation.json", "ablation.png"):
        assert (out / name).exists()
    result = json.loads((out / "ablation.json").read_text())
    assert result["schema_version"] == 2 and result["config"]["ci"] == 0.95
    assert len(result["cells"]) == 8 + 4 and len(result["rows"]) == 4 + 2
    assert {(c["variant"], c["reference"], c["metric"], c["T"]) for c in result["comparisons"]} == {
        ("+L_AF", "baseline", "top1", 1), ("+L_AF", "baseline", "top1", 2), ("KD", "CE", "top1", 2),
        ("KD", "CE", "spikes_per_sample", 2)}
    assert all(c["seeds"] == [0, 1] and c["lo"] is not None for c in result["comparisons"])
    assert all((c["boot_lo"] is not None) == (c["metric"] == "top1") for c in result["comparisons"])
    runs = sorted(p.name for p in (out / "runs").glob("*.safetensors"))
    assert sorted(p.name for p in (out / "runs").glob("*.correct.bin")) == [
        r.removesuffix(".safetensors") + ".correct.bin" for r in runs]  # each cell's per-image record
    assert (out / "runs" / runs[0].replace(".safetensors", ".correct.bin")).stat().st_size == 64 // 8
    assert len(runs) == 8 + 4 - 2  # the activity grid's CE cells are the enof baselines at T=2
    m = artifacts.load(out / "runs" / runs[0]).manifest  # the neuron options reach every cell
    assert (m.spiking.neuron.decay, m.spiking.neuron.reset, m.spiking.neuron.v_init) == (1.0, "soft", 0.5)
    assert m.data.train_subset is not None and m.data.train_subset.size == 64  # the fixed subset, recorded
    md = (out / "ablation.md").read_text()
    assert "| +L_AF | 2 |" in md and "vs CE" in md and "| 2 | +L_AF vs baseline | top-1, points |" in md
    # a second call reuses every finished cell and writes the same table
    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    ok(*args)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamp
    assert (out / "ablation.md").read_text() == md
    assert_one_error_line(*run("ablate", "--teacher", t, "--seeds", "x", "--out", out), 2, "--seeds")
    assert_one_error_line(*run("ablate", "--teacher", t, "--variants", "best", "--out", out), 2, "unknown variant")
    assert_one_error_line(*run("ablate", "--teacher", t, "--grid", "enof", "--variants", "KD", "--out", out), 2,
                          "none is in --grid enof")


def test_cells_sharing_a_start_convert_once_and_train_as_if_converted(tiny_teacher, tmp_path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells that differ only in their loss (baseline, +L_AF) start from one conversion per seed and T; each
    trains a copy of it (the first cell's training leaves the second's start untouched), and a cell equals the
    one of a student converted for itself."""
    distill_mod = importlib.import_module("enofctl.stages.distill")  # the module (the package exports the function)
    conversions = []
    real = distill_mod.convert_teacher

    def counting(teacher, cfg, *args, **kwargs):
        conversions.append((cfg.T, cfg.seed, cfg.repact))
        return real(teacher, cfg, *args, **kwargs)

    monkeypatch.setattr(distill_mod, "convert_teacher", counting)
    cfg = AblateConfig(grid="enof", T=[1], seeds=[0, 1], variants=["baseline", "+L_AF"],
                       train=DistillConfig(epochs=1, limit_train=32, limit_test=16, batch_size=16, device="cpu",
                                           calibrate=2, reconstruct=3))
    with pytest.warns(ablate_mod.StageWarning):
        shared = ablate_mod.ablate(cfg, tiny_teacher, tmp_path / "shared")
    assert sorted(conversions) == [(1, 0, False), (1, 1, False)]
    # the second user of a start (+L_AF after baseline), converted for itself: the same cell
    cell = next(c for c in shared.cells if (c.variant, c.seed) == ("+L_AF", 1))
    with pytest.warns(ablate_mod.StageWarning):
        alone = ablate_mod.ablate(cfg.model_copy(update={"seeds": [1], "variants": ["+L_AF"]}), tiny_teacher,
                                  tmp_path / "alone").cells[0]
    assert len(conversions) == 3 and (alone.top1, alone.spikes_per_sample) == (cell.top1, cell.spikes_per_sample)
    a, b = artifacts.load(alone.artifact), artifacts.load(cell.artifact)
    assert a.tensors.keys() == b.tensors.keys() and all(a.tensors[k].equal(b.tensors[k]) for k in a.tensors)
