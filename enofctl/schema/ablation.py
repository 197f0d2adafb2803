"""What `enofctl ablate` writes (ablation.json): its cells (`Cell`), the per-variant rows over seeds (`Row`),
the paired comparisons (`Comparison`), in one `AblationResult`. Plain pydantic models (no torch, no stage)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

ABLATION_SCHEMA_VERSION = 2
# helps / hurts: the CI excludes 0 on the better / worse side; else no effect found (`enofctl.stats.verdict`)
Verdict = Literal["helps", "no effect found", "hurts"]
ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Cell(BaseModel):
    grid: str
    variant: str
    T: int
    seed: int
    artifact: str
    top1: float
    spikes_per_sample: float
    seconds: float


class Row(BaseModel):
    """One variant at one T over its seeds: means, standard deviations and the CIs (None for one seed)."""

    grid: str
    variant: str
    T: int
    n: int
    top1_mean: float
    top1_std: float
    top1_lo: float | None = None
    top1_hi: float | None = None
    spikes_mean: float
    spikes_std: float
    spikes_lo: float | None = None
    spikes_hi: float | None = None
    spikes_vs_ce_pct: float | None = None
    vs_teacher: float | None = Field(None, description="top1_mean minus the teacher's top-1 on the same samples")


class Comparison(BaseModel):
    """``variant`` minus ``reference`` (same grid and T) on ``metric``, paired on the seeds both ran."""

    grid: str
    T: int
    variant: str
    reference: str
    metric: Literal["top1", "spikes_per_sample"]
    seeds: list[int]
    diff: float = Field(description="mean over the seeds of variant - reference (top1: a fraction)")
    lo: float | None = Field(None, description="the CI of diff (None for one seed)")
    hi: float | None = None
    verdict: Verdict = Field(description="helps / hurts: the CI excludes 0 (for spikes fewer is better)")
    mde: float | None = Field(None, description="minimum detectable effect at 80 % power (None for one seed)")
    boot_lo: float | None = Field(None, description="top1: the paired bootstrap interval over seeds and test "
                                  "images (None without every cell's per-image correctness, or one seed)")
    boot_hi: float | None = None


class AblationResult(BaseModel, Generic[ConfigT]):
    """ablation.json: every cell of an `ablate` run, the rows and comparisons computed from them, and the run's
    config (``ConfigT``: `enofctl.stages.ablate.AblateConfig`, bound there as ``AblationResult[AblateConfig]``,
    so the schema needs no stage)."""

    schema_version: Literal[2] = ABLATION_SCHEMA_VERSION  # 2: CIs, paired comparisons, verdicts, MDE
    teacher: str
    teacher_top1: float | None = Field(description="on the cells' test samples (measured by `ablate`)")
    test_samples: int | None = Field(None, description="test samples behind every accuracy (--limit-test)")
    config: ConfigT
    cells: list[Cell]
    rows: list[Row]
    comparisons: list[Comparison] = Field(default_factory=list)

    def best_row(self, T: int | None = None) -> Row | None:
        """The most accurate variant at ``T`` (default: the largest T of the run, ``config.T``)."""
        T = T if T is not None else max(self.config.T)
        rows = [r for r in self.rows if r.T == T]
        return max(rows, key=lambda r: r.top1_mean, default=None)
