import numpy as np
import pandas as pd
import pytest

from xrayfactory.metrics import bootstrap_ci, paired_vs, summary, with_errors


def _rows(arm: str, errs: list[float], *, visible=None, found=None) -> pd.DataFrame:
    n = len(errs)
    visible = [True] * n if visible is None else visible
    found = [True] * n if found is None else found
    return pd.DataFrame(
        {
            "arm": arm,
            "fold": 0,
            "seed": 0,
            "image_id": [f"s/{i}" for i in range(n)],
            "subject": "s",
            "landmark": "FH-l",
            "gt_col": 10.0,
            "gt_row": 10.0,
            "visible": visible,
            "pred_col": 10.0 + np.asarray(errs),
            "pred_row": 10.0,
            "score": 1.0,
            "found": found,
            "pixel_spacing_mm": 2.0,
            "magnification": 2.0,
        }
    )


def test_errors_count_only_visible_and_found():
    df = with_errors(
        _rows(
            "real",
            [1.0, 2.0, 3.0, 4.0],
            visible=[True, True, False, True],
            found=[True, False, True, True],
        )
    )
    assert df.err_px.tolist()[0] == 1.0 and np.isnan(df.err_px[1]) and np.isnan(df.err_px[2])
    assert df.err_mm.tolist()[3] == 8.0 and df.err_mm_iso.tolist()[3] == 4.0
    s = summary(df, [2.5, 10.0])
    assert s["n_errors"] == 2 and s["mean_mm"] == pytest.approx(5.0)
    assert (s["tp"], s["fn"], s["fp"], s["tn"]) == (2, 1, 1, 0)
    assert s["detection_rate"] == pytest.approx(2 / 3) and s["false_positive_rate"] == 1.0
    assert s["success_2.5mm"] == pytest.approx(1 / 3)  # the miss counts as a failure
    assert s["success_10mm"] == pytest.approx(2 / 3)


def test_bootstrap_interval_brackets_the_mean():
    x = np.random.default_rng(0).normal(5, 2, 200)
    lo, hi = bootstrap_ci(x)
    assert lo < x.mean() < hi and hi - lo < 1.0


def test_paired_comparison_detects_a_consistent_difference():
    rng = np.random.default_rng(1)
    base = rng.uniform(1, 5, 30)
    df = with_errors(pd.concat([_rows("real", base.tolist()), _rows("drr", (base + 1.0).tolist())]))
    p = paired_vs(df, "drr", "real")
    assert p["paired_n"] == 30
    assert p["diff_mean_mm"] == pytest.approx(2.0)  # 1 px x 2 mm/px
    assert p["wilcoxon_p"] < 1e-4
    assert p["diff_ci95_low_mm"] <= 2.0 <= p["diff_ci95_high_mm"]
