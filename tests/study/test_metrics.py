import numpy as np
import pandas as pd
import pytest

from tests.imaging.test_imageset import _set
from xrayfactory.core.bootstrap import cluster_bootstrap
from xrayfactory.detection.predictions import prediction_table, with_errors
from xrayfactory.study.metrics import cells, paired_vs, per_fold, summary
from xrayfactory.study.report import (
    StatsSettings,
    _markdown,
    control_steps,
    cumulative_curve,
    metrics_table,
    scaling_table,
)

T = [5.0, 20.0]


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


def _grid(arm: str, err_mm: np.ndarray, found: np.ndarray, *, seed: int = 0, fold: int = 0):
    """Rows for an (images, landmarks) grid of errors (mm, 1 mm pixels) and found flags."""
    n, n_lm = err_mm.shape
    return pd.DataFrame(
        {
            "arm": arm,
            "fold": fold,
            "seed": seed,
            "image_id": np.repeat([f"s{i % 10}/{i}" for i in range(n)], n_lm),
            "subject": np.repeat([f"s{i % 10}" for i in range(n)], n_lm),
            "landmark": np.tile([f"L{k}" for k in range(n_lm)], n),
            "gt_col": 0.0,
            "gt_row": 0.0,
            "visible": True,
            "pred_col": err_mm.ravel(),
            "pred_row": 0.0,
            "score": 1.0,
            "found": found.ravel(),
            "pixel_spacing_mm": 1.0,
            "magnification": 2.0,
        }
    )


def _summary(df: pd.DataFrame, unit: str = "image") -> dict:
    return summary(df, cells(df, T), T, unit)


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
    s = summary(df, cells(df, [2.5, 10.0]), [2.5, 10.0], "image")
    assert s["n_errors"] == 2 and s["mean_mm"] == pytest.approx(5.0)
    assert (s["tp"], s["fn"], s["fp"], s["tn"]) == (2, 1, 1, 0)
    assert s["detection_rate"] == pytest.approx(2 / 3) and s["false_positive_rate"] == 1.0
    assert s["success_2.5mm"] == pytest.approx(1 / 3)  # the miss counts as a failure
    assert s["success_10mm"] == pytest.approx(2 / 3)


def test_paired_comparison_detects_a_consistent_difference():
    rng = np.random.default_rng(1)
    base = rng.uniform(1, 5, 30)
    df = with_errors(pd.concat([_rows("real", base.tolist()), _rows("drr", (base + 1.0).tolist())]))
    p = paired_vs(cells(df, T), "drr", "real", T, "image")
    assert p["paired_n"] == 30
    assert p["diff_mean_mm"] == pytest.approx(2.0)  # 1 px x 2 mm/px
    assert p["wilcoxon_p"] < 1e-4
    assert p["diff_ci95_low_mm"] <= 2.0 <= p["diff_ci95_high_mm"]
    assert p["detection_rate_diff"] == 0.0


def test_control_steps_pair_each_arm_with_the_one_before_it_in_its_chain():
    """A step of a generator's chain is the later arm minus the earlier on the same cells; a
    step over a control the study lacks adds both steps' changes."""
    base = np.random.default_rng(5).uniform(1, 5, 40)
    px = {"real": 0, "real_resized": 0.5, "synth2d": 3, "drr": 1, "drr_grid": 2, "synth3d": 6}
    df = with_errors(pd.concat([_rows(arm, (base + o).tolist()) for arm, o in px.items()]))
    stats = StatsSettings(thresholds_mm=T, n_boot=200, min_subject_clusters=20)
    steps = control_steps(cells(df, T), stats)
    assert list(zip(steps["from"], steps.to, strict=True)) == [
        ("drr", "drr_grid"),
        ("drr_grid", "synth3d"),
        ("real", "real_resized"),
        ("real_resized", "synth2d"),
    ]
    np.testing.assert_allclose(steps.diff_mean_mm, [2.0, 8.0, 1.0, 5.0])  # 2 mm per px
    assert (steps.diff_ci95_low_mm <= steps.diff_mean_mm + 1e-9).all()
    assert steps.adds.tolist() == [
        "synth3d grid and HU window",
        "autoencoder reconstruction + new (deformed) masks through the decoder alone"
        " + latent diffusion model",
        "synth2d image size",
        "2D diffusion model",
    ]
    alone = control_steps(cells(df[df.arm.isin(["real", "synth3d"])], T), stats)
    assert alone.empty and alone.columns.tolist() == ["from", "to", "adds"]


def test_an_arm_that_misses_hard_landmarks_does_not_look_more_accurate():
    """Two arms with the same error per landmark (easy ~3 mm, hard ~10 mm); B finds only 30%
    of the hard ones. Comparing per-image means of what each found made B "better by 1.9 mm,
    p ~ 1e-17"; on the cells both found the difference is ~0, and the misses show up as a
    lower detection rate and lower success at 20 mm."""
    rng = np.random.default_rng(0)
    n, easy, hard = 200, 5, 5
    typical = np.r_[np.full(easy, 3.0), np.full(hard, 10.0)]
    err = typical * rng.uniform(0.8, 1.2, (n, easy + hard))
    all_found = np.ones(err.shape, bool)
    b_found = all_found.copy()
    b_found[:, easy:] = rng.random((n, hard)) < 0.3
    df = with_errors(pd.concat([_grid("A", err, all_found), _grid("B", err, b_found)]))
    p = paired_vs(cells(df, T), "B", "A", T, "image")
    assert abs(p["diff_mean_mm"]) < 0.05
    assert p["diff_ci95_low_mm"] <= 0 <= p["diff_ci95_high_mm"]
    assert p["paired_n"] == n * easy + b_found[:, easy:].sum()
    assert p["detection_rate_diff"] == pytest.approx(-0.5 * 0.7, abs=0.03)
    assert p["detection_rate_diff_ci95_high"] < 0
    assert p["success_20mm_diff"] == pytest.approx(p["detection_rate_diff"])
    assert p["success_5mm_diff"] == pytest.approx(0.0, abs=1e-9)  # no hard one is within 5 mm


def test_seeds_are_averaged_before_intervals_and_images_counted_once():
    rng = np.random.default_rng(2)
    err = rng.gamma(2.0, 2.0, (60, 4)) + rng.gamma(2.0, 4.0, (60, 1))  # image effect
    found = np.ones(err.shape, bool)
    one = with_errors(_grid("real", err, found))
    three = with_errors(pd.concat([_grid("real", err, found, seed=s) for s in range(3)]))
    s1, s3 = _summary(one), _summary(three)
    assert s3["n_images"] == s1["n_images"] == 60 and s3["n_seeds"] == 3
    assert s3["mean_mm"] == pytest.approx(s1["mean_mm"])
    assert (s3["ci95_low_mm"], s3["ci95_high_mm"]) == pytest.approx(
        (s1["ci95_low_mm"], s1["ci95_high_mm"])
    )
    # clustered by image: wider than treating the 240 landmark errors as independent
    naive = cluster_bootstrap(one.err_mm.to_numpy(), np.arange(len(one)))
    assert s1["ci95_high_mm"] - s1["ci95_low_mm"] > 1.3 * (naive[1] - naive[0])
    by_subject = _summary(one, "subject")
    assert by_subject["n_clusters"] == 10 and by_subject["ci_cluster"] == "subject"


def test_per_fold_table_shows_each_fold_and_the_seed_spread():
    rng = np.random.default_rng(3)
    found = np.ones((20, 3), bool)
    parts = [
        _grid("real", rng.uniform(0, 2, (20, 3)) + 10 * fold + seed, found, seed=seed, fold=fold)
        for fold in (0, 1)
        for seed in (0, 1)
    ]
    df = with_errors(pd.concat(parts))
    table = per_fold(df, cells(df, T), T)
    assert table.fold.tolist() == [0, 1] and (table.n_images == 20).all()
    assert table.mean_mm.iloc[1] - table.mean_mm.iloc[0] == pytest.approx(10.0, abs=0.5)
    assert table.seed_sd_mm.tolist() == pytest.approx([np.sqrt(0.5)] * 2, abs=0.2)


def test_rates_without_anything_to_count_are_empty_not_zero():
    """No invisible landmark: the false-positive rate cannot be measured (it was shown as
    0.00); no visible one: neither can the detection rate."""
    all_visible = _summary(with_errors(_rows("real", [1.0, 2.0])))
    assert all_visible["detection_rate"] == 1.0 and np.isnan(all_visible["false_positive_rate"])
    none_visible = with_errors(_rows("real", [1.0, 2.0], visible=[False, False]))
    s = _summary(none_visible)
    assert np.isnan(s["detection_rate"]) and s["false_positive_rate"] == 1.0


def test_an_unannotated_landmark_in_the_image_is_no_false_positive():
    """A label the ground truth lacks (DeepFluoro: not annotated, placed where P projects it,
    inside the image) is unknown: finding it is neither a false nor a true negative, as in
    training; one outside the image is a true absence."""
    test = _set(n=2, size=8)
    test.landmarks[:] = [[[3.0, 3.0], [3.0, 3.0]], [[3.0, 3.0], [20.0, 3.0]]]
    test.visible[:] = [[True, False], [True, False]]  # (1, B) unannotated, (2, B) outside
    test.attrs["magnification"] = 2.0
    found = np.ones((2, 2), bool)
    table = prediction_table("real", 0, 0, test, np.array(["s0/0", "s1/0"]), test.landmarks,
                             found.astype(float), found)  # fmt: skip
    assert table.known.tolist() == [True, False, True, True]
    s = _summary(with_errors(table))
    assert (s["tp"], s["fp"], s["tn"]) == (2, 1, 0) and s["false_positive_rate"] == 1.0


def test_the_interval_says_how_many_clusters_it_rests_on():
    """An arm that finds nothing in 3 of 5 images: its error interval rests on 2 clusters."""
    found = np.array([[True], [True], [False], [False], [False]])
    s = _summary(with_errors(_grid("real", np.arange(1.0, 6.0)[:, None], found)))
    assert s["n_clusters"] == 2 and s["n_images"] == 5


def _detector_that_misses(rng: np.random.Generator) -> pd.DataFrame:
    """`real` (80 images) finds everything; `real@40`, with the same error per landmark
    (easy ~3 mm, hard ~10 mm), misses 70% of the hard ones."""
    typical = np.r_[np.full(5, 3.0), np.full(5, 10.0)]
    err = typical * rng.uniform(0.8, 1.2, (200, 10))
    found = np.ones(err.shape, bool)
    misses = found.copy()
    misses[:, 5:] = rng.random((200, 5)) < 0.3
    return with_errors(pd.concat([_grid("real", err, found), _grid("real@40", err, misses)]))


def test_scaling_shows_what_a_smaller_set_misses():
    """Mean error over the landmarks found makes the detector that misses look better; the
    scaling table puts success (a miss fails, with its interval) and detection beside it, and
    `real` is not compared with itself."""
    df = _detector_that_misses(np.random.default_rng(4))
    t = [2.5, 20.0]  # a threshold whose column name is no Python identifier
    stats = StatsSettings(thresholds_mm=t, n_boot=500, min_subject_clusters=20)
    sets = {"real": {"real": 80}, "real@40": {"real": 40}}
    table = metrics_table(df, cells(df, t), stats, "real", sets).set_index("arm")
    assert table.mean_mm["real@40"] < table.mean_mm["real"]  # what the error alone shows
    assert set(table.compared_with) == {""} and "diff_mean_mm" not in table
    # compared with `real` (as if of its size): a count beside an empty cell, printed as such
    paired = metrics_table(df, cells(df, t), stats, "real", {**sets, "real@40": {"real": 80}})
    assert paired.paired_n.isna().tolist() == [True, False]
    lines = _markdown(paired[["arm", "paired_n"]], "").splitlines()
    assert lines[-2:] == ["| real |  |", f"| real@40 | {paired.paired_n.iloc[1]} |"]
    scaling = scaling_table(table.reset_index(), sets, t).set_index("arm")
    assert scaling.n_train.tolist() == [40, 80] and set(scaling.line) == {"real"}
    assert scaling.detection_rate["real@40"] == pytest.approx(0.65, abs=0.03)
    assert scaling.success_20mm["real@40"] == pytest.approx(scaling.detection_rate["real@40"])
    assert scaling.success_20mm_ci95_high["real@40"] < scaling.success_20mm_ci95_low["real"]
    assert scaling["success_2.5mm"]["real@40"] == table["success_2.5mm"]["real@40"]


def test_cumulative_curve_levels_off_at_the_detection_rate():
    """Fractions of the visible landmarks: a detector that misses reaches only its detection
    rate, and is never above one that finds the same landmarks as well and more."""
    c = cells(_detector_that_misses(np.random.default_rng(5)), T)
    e_all, f_all = cumulative_curve(c, "real")
    e_miss, f_miss = cumulative_curve(c, "real@40")
    assert f_all[-1] == 1.0 and f_miss[-1] == pytest.approx(0.65, abs=0.03)
    at_5mm = [
        f[np.searchsorted(e, 5.0, side="right") - 1] for e, f in ((e_all, f_all), (e_miss, f_miss))
    ]
    assert at_5mm[0] == pytest.approx(at_5mm[1], abs=0.01) == 0.5
