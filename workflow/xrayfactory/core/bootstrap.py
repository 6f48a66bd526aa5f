"""Cluster bootstrap: intervals for means of values that come in correlated groups (the
landmarks of one image, the images of one subject)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def cluster_bootstrap(
    values: np.ndarray, clusters: np.ndarray, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean of `values` when whole clusters are resampled
    (the mean of a resample is its total over its total count: a ratio estimator)."""
    values = np.asarray(values, float)
    keep = ~np.isnan(values)
    codes, uniques = pd.factorize(np.asarray(clusters)[keep])
    k = len(uniques)
    if k < 2:
        return (np.nan, np.nan)
    sums = np.bincount(codes, weights=values[keep], minlength=k)
    counts = np.bincount(codes, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, n_boot, 250):  # bounded memory for large test sets
        idx = rng.integers(0, k, (min(250, n_boot - start), k))
        means.append(sums[idx].sum(axis=1) / counts[idx].sum(axis=1))
    return tuple(np.percentile(np.concatenate(means), [2.5, 97.5]))  # type: ignore[return-value]
