import numpy as np
import pytest

from xrayfactory.core.bootstrap import cluster_bootstrap


def test_cluster_bootstrap_brackets_the_mean_and_resamples_whole_clusters():
    x = np.random.default_rng(0).normal(5, 2, 200)
    lo, hi = cluster_bootstrap(x, np.arange(200))
    assert lo < x.mean() < hi and hi - lo < 1.0
    # ten identical copies of each value in one cluster: no more information than 200 values
    lo10, hi10 = cluster_bootstrap(np.repeat(x, 10), np.repeat(np.arange(200), 10))
    assert hi10 - lo10 == pytest.approx(hi - lo, rel=0.15)
    naive = cluster_bootstrap(np.repeat(x, 10), np.arange(2000))
    assert naive[1] - naive[0] < 0.5 * (hi10 - lo10)
