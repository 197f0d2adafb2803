"""enofctl.stats and the ablation's statistics on synthetic cells: planted effects come out helps / no effect
found / hurts, pairing is by seed (not by order), and a resumed ablation gives the same table."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest

from enofctl import stats
from enofctl.errors import ArtifactError
from enofctl.report import ablation_markdown
from enofctl.schema import StudentMetrics
from enofctl.stages import DistillConfig
from enofctl.stages import ablate as ablate_mod
from enofctl.stages.ablate import AblateConfig, Cell, compare, plan, result_of, summarize

SEEDS = [0, 1, 2, 3, 4]
SEED_NOISE = [0.04, -0.05, 0.01, 0.06, -0.03]  # shared by every variant of a seed: what pairing removes
JITTER = [0.001, -0.002, 0.0015, -0.001, 0.0005]  # each cell's own noise


def test_t_quantiles_are_the_table_values() -> None:
    assert stats.t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-4)
    assert stats.t_quantile(0.975, 30) == pytest.approx(2.0423, abs=1e-4)
    assert stats.t_quantile(0.80, 4) == pytest.approx(0.9410, abs=1e-4)
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)


def test_interval_and_mde_follow_their_formulas() -> None:
    ci = stats.interval([1.0, 2.0, 3.0], 0.95)
    h = stats.t_quantile(0.975, 2) * 1.0 / math.sqrt(3)  # s = 1
    assert (ci.mean, ci.lo, ci.hi, ci.n) == (2.0, pytest.approx(2 - h), pytest.approx(2 + h), 3)
    assert ci.half_width == pytest.approx(h)
    assert stats.interval([1.0, 2.0, 3.0], 0.5).half_width < h  # a lower level: a narrower interval
    one = stats.interval([0.7])
    assert (one.mean, one.lo, one.hi, one.half_width) == (0.7, None, None, None)
    assert stats.verdict(one) == "no effect found"
    d = [0.01, 0.03, 0.02, 0.04]
    s = stats.std(d)
    assert stats.mde(d) == pytest.approx((stats.t_quantile(0.975, 3) + stats.t_quantile(0.8, 3)) * s / 2)
    assert stats.mde([0.1]) is None


def _cells(effects: dict[str, float], grid: str = "enof", T: int = 2, seeds=SEEDS, spikes=None) -> list[Cell]:
    """One cell per variant and seed: 0.80 + the seed's shared noise + the variant's planted effect + jitter."""
    out = []
    for v, effect in effects.items():
        for i, s in enumerate(seeds):
            top1 = 0.80 + SEED_NOISE[i] + effect + JITTER[(i + len(v)) % 5]
            sp = (spikes or {}).get(v, 1000.0) * (1 + SEED_NOISE[i]) + 3 * JITTER[i] * 1000
            out.append(Cell(grid=grid, variant=v, T=T, seed=s, artifact="x", top1=top1, spikes_per_sample=sp,
                            seconds=0))
    return out


def _by(comparisons, metric: str = "top1"):
    return {(c.variant, c.reference): c for c in comparisons if c.metric == metric}


def test_planted_effects_give_helps_no_effect_and_hurts() -> None:
    # +L_AF: +3 points by construction; +RepAct: none; both: 3 points below +L_AF (so +0 vs baseline)
    cells = _cells({"baseline": 0.0, "+L_AF": 0.03, "+RepAct": 0.0, "both": 0.0})
    by = _by(compare(cells))
    assert by[("+L_AF", "baseline")].verdict == "helps"
    assert by[("+L_AF", "baseline")].lo > 0 and by[("+L_AF", "baseline")].diff == pytest.approx(0.03, abs=0.003)
    assert by[("+RepAct", "baseline")].verdict == "no effect found"
    assert by[("+RepAct", "baseline")].lo < 0 < by[("+RepAct", "baseline")].hi
    assert by[("both", "+L_AF")].verdict == "hurts" and by[("both", "+L_AF")].hi < 0
    assert by[("both", "+RepAct")].verdict == "no effect found"
    assert all(c.mde is not None and 0 < c.mde < 0.01 for c in by.values())  # pairing: small MDE
    # unpaired, the shared seed noise (sd 4.5 points) would hide the 3-point effect: the rows' CIs overlap
    rows = {r.variant: r for r in summarize(cells)}
    assert rows["+L_AF"].top1_lo < rows["baseline"].top1_hi


def test_activity_spikes_fewer_is_better() -> None:
    cells = _cells({"CE": 0.0, "KD": 0.0, "KD+act": 0.0, "KD+logits": 0.0}, grid="activity",
                   spikes={"CE": 1000, "KD": 1000, "KD+act": 600, "KD+logits": 1400})
    spikes = _by(compare(cells), "spikes_per_sample")
    assert spikes[("KD+act", "KD")].verdict == "helps" and spikes[("KD+act", "KD")].diff < 0
    assert spikes[("KD+logits", "KD")].verdict == "hurts"
    assert spikes[("KD", "CE")].verdict == "no effect found"
    assert _by(compare(cells))[("KD+act", "KD")].verdict == "no effect found"  # accuracy: the same


def test_order_does_not_matter_but_pairing_does() -> None:
    cells = _cells({"baseline": 0.0, "+L_AF": 0.03, "+RepAct": 0.0, "both": 0.0})
    shuffled = cells[:]
    random.Random(1).shuffle(shuffled)
    assert compare(shuffled) == compare(cells) and summarize(shuffled) == summarize(cells)
    # the same values paired with another seed's: the shared noise no longer cancels
    moved = {s: SEEDS[(i + 1) % 5] for i, s in enumerate(SEEDS)}
    mispaired = [c.model_copy(update={"seed": moved[c.seed]}) if c.variant == "+L_AF" else c for c in cells]
    right, wrong = _by(compare(cells))[("+L_AF", "baseline")], _by(compare(mispaired))[("+L_AF", "baseline")]
    assert wrong.verdict == "no effect found" and wrong.hi - wrong.lo > 10 * (right.hi - right.lo)
    assert wrong.diff == pytest.approx(right.diff)  # the mean difference alone cannot tell them apart


def test_one_seed_says_so_and_claims_nothing() -> None:
    cells = _cells({"baseline": 0.0, "+L_AF": 0.03}, seeds=[0])
    result = result_of(AblateConfig(T=[2], seeds=[0]), "t", 0.9, 100, cells)
    assert all(c.verdict == "no effect found" and c.lo is None and c.mde is None for c in result.comparisons)
    md = ablation_markdown(result)
    assert "1 seed: no interval" in md and "[95 % CI]" in md and "helps" not in md.split("Verdict:")[0]
    assert ablate_mod.seed_warning([0]).startswith("--seeds 0: one seed gives no confidence interval")
    assert "5" in ablate_mod.seed_warning([0, 1]) and ablate_mod.seed_warning(SEEDS) is None


def test_markdown_shows_intervals_verdicts_and_mde() -> None:
    cells = _cells({"baseline": 0.0, "+L_AF": 0.03, "+RepAct": 0.0, "both": 0.0})
    result = result_of(AblateConfig(T=[2]), "t", 0.9, 360, cells)
    md = ablation_markdown(result)
    assert "Error bars and intervals are 95 % confidence intervals" in md
    assert "| T | comparison | metric | paired diff [95 % CI] | verdict | MDE | seeds | bootstrap |" in md
    line = next(x for x in md.splitlines() if "+L_AF vs baseline" in x)
    c = _by(result.comparisons)[("+L_AF", "baseline")]
    assert f"{100 * c.diff:+.2f} [{100 * c.lo:+.2f}, {100 * c.hi:+.2f}] | helps | {100 * c.mde:.2f} | 5 | - |" in line
    r = result.rows[0]
    assert f"| baseline | 2 | {100 * r.top1_mean:.2f} [{100 * r.top1_lo:.2f}, {100 * r.top1_hi:.2f}] |" in md
    assert result.schema_version == 2
    assert type(result).model_validate_json(result.model_dump_json()) == result  # ablation.json round-trips


def test_config_refuses_repeated_seeds_and_bad_levels() -> None:
    assert AblateConfig().seeds == SEEDS and AblateConfig().ci == 0.95
    with pytest.raises(ValueError, match="seed 1 is given twice"):
        AblateConfig(seeds=[0, 1, 1])
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            AblateConfig(ci=bad)


def test_an_interrupted_ablation_resumes_to_the_same_table(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells fake-trained (a planted effect), the run interrupted after 5 of them; the second run trains only
    the rest and its statistics and table equal those of a run never interrupted."""
    written, trained = {}, []

    def fake_load(path, expect=None):
        if path not in written:
            raise ArtifactError("not there")
        return written[path]

    def fake_train_cell(cfg, src, path):
        if len(trained) == 5 and interrupt[0]:
            raise KeyboardInterrupt
        trained.append(path.name)
        i = cfg.seed
        top1 = 0.8 + SEED_NOISE[i] + (0.03 if cfg.laf_lambda else 0.0) + JITTER[(i + cfg.T) % 5]
        written[path] = SimpleNamespace(manifest=SimpleNamespace(
            metrics=StudentMetrics(top1=top1, spikes_per_sample=100.0 + i), config=cfg.model_dump()))
        return written[path].manifest

    monkeypatch.setattr(ablate_mod.artifacts, "load", fake_load)
    monkeypatch.setattr(ablate_mod, "train_cell", fake_train_cell)
    cfg = AblateConfig(grid="enof", T=[1, 2], train=DistillConfig(epochs=1))
    todo = plan(cfg)
    (tmp_path / "runs").mkdir()
    interrupt = [True]
    with pytest.raises(KeyboardInterrupt):
        ablate_mod.run_cells(todo, None, tmp_path / "runs", None)
    interrupt[0] = False
    cells = ablate_mod.run_cells(todo, None, tmp_path / "runs", None)
    assert len(trained) == len(todo) == 40 and len(set(trained)) == 40  # the first 5 were not trained again
    resumed = result_of(cfg, "t", 0.9, 100, cells)
    written.clear()
    trained.clear()
    fresh = result_of(cfg, "t", 0.9, 100, ablate_mod.run_cells(todo, None, tmp_path / "runs", None))
    assert resumed.rows == fresh.rows and resumed.comparisons == fresh.comparisons
    assert ablation_markdown(resumed) == ablation_markdown(fresh)
    assert {c.verdict for c in resumed.comparisons if c.variant == "+L_AF"} == {"helps"}


def _correct(p: float, seed: int, n: int = 2000) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < p


def test_paired_bootstrap_over_seeds_and_images() -> None:
    base = {s: _correct(0.80 + SEED_NOISE[i], 100 + i) for i, s in enumerate(SEEDS)}
    # the variant: the baseline's images, plus 3 % of them turned right (a planted +3 points on shared noise)
    better = {s: base[s] | _correct(0.15, 200 + s) for s in SEEDS}
    lo, hi = stats.paired_bootstrap(better, base)
    gain = np.mean([better[s].mean() - base[s].mean() for s in SEEDS])
    assert lo < gain < hi and lo > 0
    same = stats.paired_bootstrap({s: base[s] for s in SEEDS}, base)
    assert same == (0.0, 0.0)  # identical cells: no difference on any resample
    assert stats.paired_bootstrap(better, base) == (lo, hi)  # fixed by its seed
    assert stats.paired_bootstrap({0: better[0]}, {0: base[0]}) is None  # one seed: none
    noisy = {s: _correct(0.80 + SEED_NOISE[i], 300 + i) for i, s in enumerate(SEEDS)}  # independent images
    nlo, nhi = stats.paired_bootstrap(noisy, base)
    assert nlo < 0 < nhi  # no planted effect: the interval holds 0


def test_compare_adds_the_bootstrap_where_every_cell_has_its_images() -> None:
    cells = _cells({"baseline": 0.0, "+L_AF": 0.03})
    base = {s: _correct(0.80, 100 + s) for s in SEEDS}
    correct = {("enof", "baseline", 2, s): base[s] for s in SEEDS}
    correct |= {("enof", "+L_AF", 2, s): base[s] | _correct(0.15, 200 + s) for s in SEEDS}
    c = compare(cells, correct=correct)[0]
    assert c.boot_lo is not None and 0 < c.boot_lo < c.boot_hi
    del correct[("enof", "+L_AF", 2, 3)]
    assert compare(cells, correct=correct)[0].boot_lo is None  # one cell's record missing: no bootstrap


def test_correctness_sidecar_round_trips(tmp_path) -> None:
    path = tmp_path / "enof_baseline_T2_s0.safetensors"
    bits = _correct(0.7, 0, 13)
    ablate_mod.correct_path(path).write_bytes(np.packbits(bits).tobytes())
    assert ablate_mod.correct_path(path).name == "enof_baseline_T2_s0.correct.bin"
    assert np.array_equal(ablate_mod.read_correct(path, 13), bits)
    assert ablate_mod.read_correct(path, 100) is None  # another test set: not this cell's record
    assert ablate_mod.read_correct(tmp_path / "other.safetensors", 13) is None
