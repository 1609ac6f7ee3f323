"""Paired statistics for the A/B harness: bootstrap confidence intervals, McNemar's exact test, Holm's correction.

Every comparison is paired: the same items answered by two variants. Seeds are fixed, so a rerun reproduces the
intervals exactly.
"""

from __future__ import annotations

import numpy as np


def mean_ci(x: np.ndarray, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                   alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean of b - a, low, high): paired bootstrap, items resampled together."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return mean_ci(b - a, n_boot, seed, alpha)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """(items only a got right, items only b got right, two-sided exact p) for paired binary outcomes."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_b, n, 0.5).pvalue)
    return only_a, only_b, p


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over all comparisons of a report)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
