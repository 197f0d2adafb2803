"""`enofctl ablate`: the grids' cells, seeds, aggregation, outputs, and continuing an interrupted run."""

from __future__ import annotations

import json

import pytest
from clihelp import assert_one_error_line, ok, run

from enofctl.stages import DistillConfig
from enofctl.stages.ablate import AblateConfig, Cell, plan, summarize


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


def test_summarize_mean_spread_and_change_vs_ce() -> None:
    def cell(variant, top1, spikes, seed):
        return Cell(grid="activity", variant=variant, T=4, seed=seed, artifact="x", top1=top1,
                    spikes_per_sample=spikes, seconds=0)

    rows = {r.variant: r for r in summarize([cell("CE", 0.9, 100, 0), cell("CE", 0.8, 120, 1),
                                             cell("KD+act", 0.85, 88, 0), cell("KD+act", 0.85, 77, 1)])}
    assert rows["CE"].top1_mean == pytest.approx(0.85) and rows["CE"].top1_std == pytest.approx(0.0707, abs=1e-4)
    assert rows["KD+act"].spikes_vs_ce_pct == pytest.approx(100 * (82.5 / 110 - 1))


def test_cli_ablate_writes_tables_and_resumes(tmp_path) -> None:
    t = tmp_path / "t.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "1", "--quiet", "--out", t)
    out = tmp_path / "abl"
    args = ("ablate", "--teacher", t, "--grid", "both", "--T", "1,2", "--seeds", "0,1", "--epochs", "1",
            "--limit-train", "64", "--out", out, "--quiet")
    assert ok(*args).strip() == str(out / "ablation.md")
    for name in ("ablation.md", "ablation.json", "ablation.png"):
        assert (out / name).exists()
    result = json.loads((out / "ablation.json").read_text())
    assert len(result["cells"]) == 16 + 8 and len(result["rows"]) == 8 + 4
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 16 + 8 - 2  # the activity grid's CE cells are the enof baselines at T=2
    md = (out / "ablation.md").read_text()
    assert "| both | 2 |" in md and "vs CE" in md
    # a second call reuses every finished cell
    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    ok(*args)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamp
    assert_one_error_line(*run("ablate", "--teacher", t, "--seeds", "x", "--out", out), 2, "--seeds")
