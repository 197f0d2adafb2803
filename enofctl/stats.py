"""The statistics of an ablation, pure functions of plain numbers (no torch): a mean with its Student-t
confidence interval over seeds, the paired difference of two variants run with the same seeds, a verdict
word, and the smallest effect the run could have detected.

With n values x_1..x_n (one per seed), mean m = sum x_i / n, sample standard deviation
s = sqrt(sum (x_i - m)^2 / (n - 1)) and level L (e.g. 0.95):

    CI = m -+ t_{(1+L)/2, n-1} * s / sqrt(n)                              (Student t, n >= 2; none for n = 1)

A *paired* comparison of variant A against its reference B takes the seeds both were run with (same seed:
same data order, same calibration images) and the per-seed differences d_i = A_i - B_i; its CI is the
above on the d_i. It is far narrower than comparing two independent means when the seeds' noise is shared.

Verdict: ``helps`` when the CI lies wholly on the better side of 0, ``hurts`` when wholly on the worse side,
else ``no effect found`` (which does not mean "no effect": only none this large was detectable).

Minimum detectable effect (MDE), at 80 % power for the two-sided paired t test at level L:

    MDE = (t_{(1+L)/2, n-1} + t_{0.80, n-1}) * s_d / sqrt(n)

the usual normal-shift approximation to the noncentral t (Cohen 1988), with s_d the observed standard
deviation of the d_i: a true difference at least this large would have been found ("helps"/"hurts") in 80 %
of repeats of the run. The t quantiles come from scipy (installed with scikit-learn, a dependency).

A paired bootstrap over seeds *and* test images (`paired_bootstrap`) is offered beside the t interval where
every cell's per-image correctness is known: each of R resamples draws the seeds with replacement and, once
for all of them, the test images with replacement, and takes the mean over the drawn seeds of the accuracy
difference on the drawn images; the interval is the resamples' (1-L)/2 and (1+L)/2 percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from enofctl.schema.ablation import Verdict

POWER = 0.80


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"t quantile needs 0 < p < 1 and df >= 1 (got p={p}, df={df})")
    from scipy.stats import t

    return float(t.ppf(p, df))


def mean(values: Sequence[float]) -> float:
    """The mean, summed in the order given (callers sort by seed, so the result never depends on order)."""
    return math.fsum(values) / len(values)


def std(values: Sequence[float]) -> float:
    """The sample standard deviation (n - 1 in the denominator); 0 for one value."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and its CI at ``level`` (``lo``/``hi``/``half_width`` None for n < 2)."""

    mean: float
    n: int
    level: float
    lo: float | None = None
    hi: float | None = None

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None or self.hi is None else (self.hi - self.lo) / 2


def interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """The mean of ``values`` and its Student-t CI: m -+ t_{(1+L)/2, n-1} s / sqrt(n)."""
    if not values:
        raise ValueError("no values")
    if not 0 < level < 1:
        raise ValueError(f"CI level {level} is not in (0, 1)")
    m, n = mean(values), len(values)
    if n < 2:
        return Interval(m, n, level)
    h = t_quantile((1 + level) / 2, n - 1) * std(values) / math.sqrt(n)
    return Interval(m, n, level, m - h, m + h)


def mde(diffs: Sequence[float], level: float = 0.95, power: float = POWER) -> float | None:
    """(t_{(1+L)/2, n-1} + t_{power, n-1}) s_d / sqrt(n); None for fewer than 2 pairs."""
    n = len(diffs)
    if n < 2:
        return None
    return (t_quantile((1 + level) / 2, n - 1) + t_quantile(power, n - 1)) * std(diffs) / math.sqrt(n)


def verdict(ci: Interval, higher_is_better: bool = True) -> Verdict:
    """``helps`` / ``hurts`` when the CI excludes 0 on the better / worse side, else ``no effect found``
    (always for n < 2: no interval)."""
    if ci.lo is None or ci.hi is None:
        return "no effect found"
    if ci.lo > 0 or ci.hi < 0:
        better = ci.lo > 0 if higher_is_better else ci.hi < 0
        return "helps" if better else "hurts"
    return "no effect found"


@dataclass(frozen=True)
class Paired:
    """A variant against its reference on the seeds both ran: the per-seed differences' mean and CI, the
    verdict and the MDE (80 % power)."""

    diff: Interval
    verdict: Verdict
    mde: float | None
    seeds: tuple[int, ...]


def paired(variant: Mapping[int, float], reference: Mapping[int, float], level: float = 0.95,
           higher_is_better: bool = True) -> Paired:
    """``variant`` minus ``reference``, each a {seed: value}, paired on their common seeds (in seed order)."""
    seeds = tuple(sorted(set(variant) & set(reference)))
    if not seeds:
        raise ValueError("no seed in common: nothing to pair")
    diffs = [variant[s] - reference[s] for s in seeds]
    ci = interval(diffs, level)
    return Paired(ci, verdict(ci, higher_is_better), mde(diffs, level), seeds)


def paired_bootstrap(variant: Mapping[int, np.ndarray], reference: Mapping[int, np.ndarray], level: float = 0.95,
                     reps: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """The percentile interval of the accuracy difference, resampling seeds and test images (module doc).
    ``variant``/``reference``: {seed: bool per test image}, the same images in the same order for every cell;
    None for fewer than 2 common seeds. Fixed by ``seed``: the same interval from the same cells."""
    seeds = sorted(set(variant) & set(reference))
    if len(seeds) < 2:
        return None
    d = np.stack([variant[s].astype(np.float64) - reference[s].astype(np.float64) for s in seeds])  # [S, N]
    S, N = d.shape
    rng = np.random.default_rng(seed)
    out = np.empty(reps)
    for r in range(reps):
        weights = np.bincount(rng.integers(0, N, N), minlength=N) / N  # the images drawn, as counts
        out[r] = (d[rng.integers(0, S, S)] @ weights).mean()
    lo, hi = np.quantile(out, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
