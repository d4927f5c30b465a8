"""The statistics of ``specdecode audit``: is a sample of outcomes drawn from the same distribution as another
sample (two-sample homogeneity), or as a distribution the endpoint reported (one-sample goodness of fit), and the
smallest difference a sample this large detects (the power statement). scipy does the distributions.

* ``two_sample``: a 2 x C contingency table of outcome counts. Cells whose expected count is below 5 are pooled
  into one (Cochran's rule); the G-test (log-likelihood ratio, scipy's ``chi2_contingency``) when the pooled table
  has at least 2 cells and every expected count >= 5, else a permutation test of the G statistic (labels shuffled,
  ``PERMUTATIONS`` times, seeded): exact in distribution, slower.
* ``one_sample``: counts against reported probabilities (the mass outside the reported tokens is one cell, "other");
  cells expected below 5 pooled; the G-test of goodness of fit (``power_divergence``).
* ``detectable_tv``: the smallest total-variation distance detected with probability ``power`` at level ``alpha``,
  worst case over how the difference spreads across the cells: the Pearson statistic's noncentrality is
  n_eff * sum (p - q)^2 / m >= n_eff * 4 TV^2 (Cauchy-Schwarz, sum m <= 1), with n_eff = n_a n_b / (n_a + n_b) for
  two samples and n for one, and the statistic is noncentral chi-square with the table's degrees of freedom.

Not here: talking to endpoints, files, the report (``bench.audit``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

MIN_EXPECTED = 5.0
PERMUTATIONS = 2000
OTHER = "<other>"


@dataclass(frozen=True)
class TestResult:
    method: str  # "G-test" | "permutation G-test" | "G-test (goodness of fit)" | "none (one cell)"
    statistic: float
    df: int
    p_value: float
    cells: int  # cells after pooling

    def consistent(self, alpha: float) -> bool:
        return self.p_value >= alpha


def _pooled(table: np.ndarray, labels: list) -> tuple[np.ndarray, list]:
    """table [2, C] -> the table with columns whose smallest expected count is below 5 merged into one."""
    total = table.sum()
    expected = np.outer(table.sum(1), table.sum(0)) / total
    small = expected.min(0) < MIN_EXPECTED
    if small.sum() <= 1:
        return table, labels
    keep = table[:, ~small]
    rest = table[:, small].sum(1, keepdims=True)
    return np.hstack([keep, rest]), [lab for lab, s in zip(labels, small) if not s] + [OTHER]


def _g(table: np.ndarray) -> float:
    """The G statistic of a [2, C] table (0 log 0 = 0)."""
    expected = np.outer(table.sum(1), table.sum(0)) / table.sum()
    mask = table > 0
    return float(2 * (table[mask] * np.log(table[mask] / expected[mask])).sum())


def two_sample(a: Counter, b: Counter, seed: int = 0) -> TestResult:
    """Outcome counts of two samples -> the homogeneity test (see the module docstring)."""
    labels = sorted(set(a) | set(b), key=str)
    table = np.array([[a.get(x, 0) for x in labels], [b.get(x, 0) for x in labels]], dtype=float)
    table, labels = _pooled(table, labels)
    if table.shape[1] < 2:
        return TestResult("none (one cell)", 0.0, 0, 1.0, table.shape[1])
    expected = np.outer(table.sum(1), table.sum(0)) / table.sum()
    if expected.min() >= MIN_EXPECTED:
        g, p, df, _ = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
        return TestResult("G-test", float(g), int(df), float(p), table.shape[1])
    return _permutation(table, seed)


def _permutation(table: np.ndarray, seed: int) -> TestResult:
    """A permutation test of the G statistic: the pooled outcomes relabelled at random between the samples."""
    outcomes = np.repeat(np.arange(table.shape[1]), table.sum(0).astype(int))
    n_a = int(table[0].sum())
    observed = _g(table)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(PERMUTATIONS):
        perm = rng.permutation(outcomes)
        t = np.vstack(
            [np.bincount(perm[:n_a], minlength=table.shape[1]), np.bincount(perm[n_a:], minlength=table.shape[1])]
        )
        hits += _g(t.astype(float)) >= observed - 1e-12
    return TestResult(
        "permutation G-test", observed, table.shape[1] - 1, (hits + 1) / (PERMUTATIONS + 1), table.shape[1]
    )


def one_sample(counts: Counter, reported: dict) -> TestResult:
    """Counts of outcomes against the probabilities the endpoint reported for them (the rest: one cell)."""
    labels = list(reported)
    probs = np.array([reported[x] for x in labels], dtype=float)
    observed = np.array([counts.get(x, 0) for x in labels], dtype=float)
    other_p = max(0.0, 1.0 - probs.sum())
    other_n = sum(v for k, v in counts.items() if k not in reported)
    if other_p > 1e-12 or other_n:
        labels, probs, observed = labels + [OTHER], np.append(probs, other_p), np.append(observed, other_n)
    n = observed.sum()
    expected = probs / probs.sum() * n
    small = expected < MIN_EXPECTED
    if small.sum() > 1:
        expected = np.append(expected[~small], expected[small].sum())
        observed = np.append(observed[~small], observed[small].sum())
    if len(observed) < 2:
        return TestResult("none (one cell)", 0.0, 0, 1.0, len(observed))
    if (expected == 0).any():  # an outcome the endpoint gave probability 0 was observed
        bad = observed[expected == 0].sum() > 0
        return TestResult(
            "support", float("inf") if bad else 0.0, len(observed) - 1, 0.0 if bad else 1.0, len(observed)
        )
    g, p = stats.power_divergence(observed, expected, lambda_="log-likelihood")
    return TestResult("G-test (goodness of fit)", float(g), len(observed) - 1, float(p), len(observed))


def detectable_tv(n_eff: float, df: int, alpha: float, power: float = 0.9) -> float:
    """The smallest TV distance the test detects with probability ``power`` (worst case; see the docstring)."""
    if n_eff <= 0 or df < 1:
        return 1.0
    crit = stats.chi2.ppf(1 - alpha, df)

    def short(tv: float) -> float:
        return stats.ncx2.sf(crit, df, 4 * n_eff * tv * tv) - power

    if short(1.0) < 0:
        return 1.0
    return float(optimize.brentq(short, 1e-9, 1.0))


def effective_n(n_a: int, n_b: int | None = None) -> float:
    return float(n_a) if n_b is None else n_a * n_b / (n_a + n_b) if n_a + n_b else 0.0
