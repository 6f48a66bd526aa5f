"""The study's tables and figures, from per-run prediction files (and the test images)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from xrayfactory.core.atomic import atomic_path
from xrayfactory.detection.predictions import with_errors
from xrayfactory.imaging.imageset import ImageSet
from xrayfactory.imaging.splits import image_ids
from xrayfactory.study.metrics import (
    cells,
    cluster_ids,
    cluster_unit,
    paired_vs,
    per_fold,
    per_landmark,
    summary,
)

# each generated arm after the controls that isolate its surroundings
ARM_ORDER = [
    "baseline",
    "real",
    "drr",
    "drr_grid",
    "drr_recon",
    "synth3d_nolatent",
    "synth3d",
    "real_resized",
    "synth2d",
]


# each generator's path from the real data it starts from, one control per step, with what
# the step adds; a step over controls the study lacks adds theirs together
CHAINS = (
    (
        ("drr", ""),
        ("drr_grid", "synth3d grid and HU window"),
        ("drr_recon", "autoencoder reconstruction"),
        ("synth3d_nolatent", "new (deformed) masks through the decoder alone"),
        ("synth3d", "latent diffusion model"),
    ),
    (
        ("real", ""),
        ("real_resized", "synth2d image size"),
        ("synth2d", "2D diffusion model"),
    ),
)


@dataclass(frozen=True, kw_only=True)
class StatsSettings:
    """How the report summarises (config section `evaluation`)."""

    thresholds_mm: list[float]
    n_boot: int
    min_subject_clusters: int


def _ordered(arms: list[str]) -> list[str]:
    return [a for a in ARM_ORDER if a in arms] + sorted(set(arms) - set(ARM_ORDER))


def _size(counts: dict[str, int] | None) -> int | None:
    return None if counts is None else sum(counts.values())


def reference_arm(arm: str, training_sets: dict[str, dict[str, int]]) -> str:
    """What an arm is compared with: the `real` detector trained on as many images (`real`,
    or the sweep point `real@<n>`, present or not); `real` for the baseline."""
    n = _size(training_sets.get(arm))
    return "real" if n in (None, _size(training_sets.get("real"))) else f"real@{n}"


def metrics_table(
    df: pd.DataFrame,
    c: pd.DataFrame,
    stats: StatsSettings,
    provenance: str,
    training_sets: dict[str, dict[str, int]],
) -> pd.DataFrame:
    """One row per arm: its summary and the paired comparison, on the same cells, with `real`
    trained on as many images (reference_arm; empty where the study has no such detector, and
    for that detector itself)."""
    unit = cluster_unit(c, stats.min_subject_clusters)
    rows = []
    arms = df.arm.unique().tolist()
    for arm in _ordered(arms):
        reference = reference_arm(arm, training_sets)
        paired = {}
        if reference in arms and reference != arm:
            paired = paired_vs(c, arm, reference, stats.thresholds_mm, unit, n_boot=stats.n_boot)
        rows.append(
            {
                "arm": arm,
                **summary(
                    df[df.arm == arm],
                    c[c.arm == arm],
                    stats.thresholds_mm,
                    unit,
                    n_boot=stats.n_boot,
                ),
                "compared_with": reference if paired else "",
                **paired,
                "test_data": provenance,
            }
        )
    table = pd.DataFrame(rows)
    if "paired_n" in table:  # a count, empty where there is no comparison
        table["paired_n"] = table.paired_n.astype("Int64")
    return table


def control_steps(c: pd.DataFrame, stats: StatsSettings) -> pd.DataFrame:
    """Each step of a generator's chain (CHAINS) between arms the study has: the later arm
    minus the earlier on the same cells (metrics.paired_vs), and what the step `adds`."""
    unit = cluster_unit(c, stats.min_subject_clusters)
    arms = set(c.arm)
    rows = []
    for chain in CHAINS:
        before, adds = None, []
        for arm, what in chain:
            if before is not None:
                adds.append(what)
            if arm not in arms:
                continue
            if before is not None:
                paired = paired_vs(c, arm, before, stats.thresholds_mm, unit, n_boot=stats.n_boot)
                rows.append({"from": before, "to": arm, "adds": " + ".join(adds), **paired})
            before, adds = arm, []
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["from", "to", "adds"])


def _fmt(v: object) -> str:
    if v is pd.NA:
        return ""
    if isinstance(v, float | np.floating):
        return "" if np.isnan(v) else (f"{v:.3g}" if abs(v) < 0.01 and v != 0 else f"{v:.2f}")
    return str(v)


def _markdown(df: pd.DataFrame, caption: str) -> str:
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    body = "".join(
        "| " + " | ".join(_fmt(v) for v in r) + " |\n" for r in df.itertuples(index=False)
    )
    return f"{caption}\n\n{head}{body}"


def _latex(df: pd.DataFrame, caption: str) -> str:
    esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%")  # noqa: E731
    lines = [
        r"\begin{table}",
        r"\centering",
        rf"\caption{{{esc(caption)}}}",
        r"\begin{tabular}{" + "l" + "r" * (len(df.columns) - 1) + "}",
        r"\hline",
        " & ".join(esc(c) for c in df.columns) + r" \\",
        r"\hline",
    ]
    lines += [" & ".join(esc(_fmt(v)) for v in r) + r" \\" for r in df.itertuples(index=False)]
    lines += [r"\hline", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def test_data_note(proxy: bool, cohort_source: str) -> str:
    """What the test images are, for every table and caption that rests on them."""
    if not proxy:
        return "real"
    note = "proxy-real (demo acquisition model)"
    if cohort_source == "demo":
        note += "; subjects are deformations of one CT, not independent patients"
    return note


def interval_note(unit: str, n_clusters: int, n_boot: int) -> str:
    """How a table's 95% intervals were computed."""
    return (
        f"95% intervals: percentile bootstrap ({n_boot} resamples) of whole test {unit}s "
        f"({n_clusters} clusters; an arm's error interval rests on those where it found a "
        f"landmark, `n_clusters` in metrics.csv), seeds averaged first"
    )


def write_report(
    predictions: list[str | os.PathLike],
    test_images: ImageSet,
    out_dir: str | os.PathLike,
    stats: StatsSettings,
    cohort_source: str,
    training_sets: dict[str, dict[str, int]],
) -> pd.DataFrame:
    """metrics.csv/.md/.tex, per_fold.csv, control_steps.csv, per_landmark.csv, scaling.csv and
    figures under `out_dir` (`training_sets`: each detector arm's images per source)."""
    out = Path(out_dir)
    df = with_errors(pd.concat([pd.read_csv(p) for p in predictions], ignore_index=True))
    c = cells(df, stats.thresholds_mm)
    provenance = test_data_note(bool(test_images.attrs.get("proxy")), cohort_source)
    table = metrics_table(df, c, stats, provenance, training_sets)
    unit = table.ci_cluster.iloc[0]
    intervals = interval_note(unit, len(np.unique(cluster_ids(c, unit))), stats.n_boot)
    n_test = c[["fold", "image_id"]].drop_duplicates().shape[0]
    caption = (
        f"Landmark error on held-out X-rays ({provenance}): {n_test} "
        f"test images, {df.fold.nunique()} folds, {df.seed.nunique()} seed(s); errors in mm at the "
        f"detector (_iso: at the isocentre), on cells (test image, landmark) averaged over seeds. "
        f"{intervals}. Paired columns compare each arm with `real` trained on as many images "
        f"(`compared_with`) on the same cells: "
        f"error difference where both found the landmark, detection-rate difference over the "
        f"visible ones."
    )
    with atomic_path(out / "metrics.csv") as tmp:
        table.to_csv(tmp, index=False)
    short = table.reindex(  # the paired columns are absent where no arm has a comparison
        columns=[
            "arm",
            "n_images",
            "mean_mm",
            "ci95_low_mm",
            "ci95_high_mm",
            "median_mm",
            *[f"success_{t:g}mm" for t in stats.thresholds_mm],
            "detection_rate",
            "false_positive_rate",
            "compared_with",
            "paired_n",
            "diff_mean_mm",
            "diff_ci95_low_mm",
            "diff_ci95_high_mm",
            "detection_rate_diff",
            "wilcoxon_p",
        ]
    )
    _write(out / "metrics.md", _markdown(short, caption))
    _write(out / "metrics.tex", _latex(short, caption))
    folds = per_fold(df, c, stats.thresholds_mm, n_boot=stats.n_boot)
    folds["test_data"] = provenance
    with atomic_path(out / "per_fold.csv") as tmp:
        folds.to_csv(tmp, index=False)
    steps = control_steps(c, stats)
    steps["test_data"] = provenance
    with atomic_path(out / "control_steps.csv") as tmp:
        steps.to_csv(tmp, index=False)
    lm = per_landmark(c)
    lm["test_data"] = provenance
    with atomic_path(out / "per_landmark.csv") as tmp:
        lm.to_csv(tmp, index=False)
    # the arms and the baseline (trained on their own images, or none); sweep points and
    # recipes are in the table and the scaling figure
    arms = [a for a in _ordered(df.arm.unique().tolist()) if set(training_sets.get(a, [a])) == {a}]
    short = provenance.split(" (")[0]  # figure titles: "real" or "proxy-real"
    scaling = scaling_table(table, training_sets, stats.thresholds_mm)
    with atomic_path(out / "scaling.csv") as tmp:
        scaling.to_csv(tmp, index=False)
    _scaling(scaling, table, headline_threshold(stats.thresholds_mm), short, out / "scaling.png")
    _cumulative(c, arms, short, out / "cumulative_error.png")
    _per_landmark_bars(lm, arms, short, out / "per_landmark.png")
    _examples(df, arms, test_images, short, out / "examples.png")
    return table


def headline_threshold(thresholds_mm: list[float]) -> float:
    """The success threshold the scaling figure draws: the middle one."""
    return sorted(thresholds_mm)[len(thresholds_mm) // 2]


def scaling_table(
    table: pd.DataFrame, training_sets: dict[str, dict[str, int]], thresholds_mm: list[float]
) -> pd.DataFrame:
    """Against training-set size, one row per detector arm with its source (`line`: the arm a
    sweep point samples, or "recipe" for a mixture): the mean error over the landmarks found
    and beside it what counts the misses, success at each threshold (with its interval) and
    the detection rate."""
    bounds = ("", "_ci95_low", "_ci95_high")
    success = [f"success_{t:g}mm{b}" for t in thresholds_mm for b in bounds]
    keep = ["mean_mm", "ci95_low_mm", "ci95_high_mm", *success, "detection_rate", "test_data"]
    rows = []
    for r in table.to_dict("records"):  # column names like success_2.5mm: not attributes
        counts = training_sets.get(r["arm"])
        if counts is None:
            continue
        line = next(iter(counts)) if len(counts) == 1 else "recipe"
        rows.append(
            {"arm": r["arm"], "line": line, "n_train": sum(counts.values()),
             **{k: r[k] for k in keep}}
        )  # fmt: skip
    return pd.DataFrame(rows).sort_values(["line", "n_train"], kind="stable")


def _scaling(
    scaling: pd.DataFrame, table: pd.DataFrame, threshold: float, provenance: str, path: Path
) -> None:
    """Mean error (left) and success within `threshold` mm (right, a miss is a failure)
    against training-set size, one line per arm, recipes as labelled squares."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    success = f"success_{threshold:g}mm"
    panels = (
        (axes[0], "mean_mm", "ci95_low_mm", "ci95_high_mm", "mean error at the detector (mm)"),
        (axes[1], success, f"{success}_ci95_low", f"{success}_ci95_high",
         f"success within {threshold:g} mm (a miss fails)"),
    )  # fmt: skip
    for ax, y, low, high, label in panels:
        for line in _ordered(scaling.line.unique().tolist()):
            sub = scaling[scaling.line == line]
            err = [sub[y] - sub[low], sub[high] - sub[y]]
            style = {"ls": "none", "marker": "s"} if line == "recipe" else {"marker": "o"}
            ax.errorbar(sub.n_train, sub[y], yerr=err, capsize=3, label=line, **style)
            if line == "recipe":
                for r in sub.to_dict("records"):
                    ax.annotate(
                        r["arm"],
                        (r["n_train"], r[y]),
                        fontsize=7,
                        xytext=(4, 4),
                        textcoords="offset points",
                    )
        base = table.loc[table.arm == "baseline", y]
        if len(base):
            ax.axhline(base.iloc[0], color="grey", ls="--", label="baseline (mean position)")
        ax.set_xscale("log")
        sizes = sorted(set(scaling.n_train))
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set(xlabel="training images", ylabel=label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Data scaling ({provenance} test images)")
    _save(fig, path)


def cumulative_curve(c: pd.DataFrame, arm: str) -> tuple[np.ndarray, np.ndarray]:
    """An arm's sorted errors (seed-averaged cells) and the fraction of its visible cells
    found within each: the curve levels off at the detection rate, so a miss never looks
    accurate."""
    visible = c[(c.arm == arm) & c.visible]
    e = np.sort(visible.err_mm.dropna().to_numpy())
    return e, np.arange(1, len(e) + 1) / max(len(visible), 1)


def _cumulative(c: pd.DataFrame, arms: list[str], provenance: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    top = np.nanpercentile(c.err_mm, 98) if c.err_mm.notna().any() else 1.0
    for arm in arms:
        e, fraction = cumulative_curve(c, arm)
        if len(e):
            ax.step(e, fraction, where="post", label=arm)
    ax.set(
        xlabel="error at the detector (mm)",
        ylabel="fraction of visible landmarks found within",
        xlim=(0, top),
        ylim=(0, 1),
        title=f"Cumulative error ({provenance} test images)",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def _per_landmark_bars(lm: pd.DataFrame, arms: list[str], provenance: str, path: Path) -> None:
    names = list(dict.fromkeys(lm.landmark))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) * len(arms) / 2), 4))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        sub = lm[lm.arm == arm].set_index("landmark").reindex(names)
        ax.bar(
            np.arange(len(names)) + i * width,
            sub.mean_mm,
            width,
            yerr=sub.sd_mm,
            label=arm,
            capsize=2,
        )
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=45)
    ax.set(
        ylabel="error at the detector (mm), mean ± sd", title=f"Per-landmark error ({provenance})"
    )
    ax.legend()
    _save(fig, path)


def _examples(
    df: pd.DataFrame, arms: list[str], images: ImageSet, provenance: str, path: Path, n: int = 4
) -> None:
    """A grid: rows are test images, columns arms; ground truth (green) and predictions (red)."""
    ids = df.loc[df.seed == df.seed.min()].drop_duplicates(["fold", "image_id"]).head(n)
    within = {image_id: i for i, image_id in enumerate(image_ids(images.subject))}
    fig, axes = plt.subplots(
        len(ids), len(arms), figsize=(2.6 * len(arms), 2.6 * len(ids)), squeeze=False
    )
    for r, row in enumerate(ids.itertuples()):
        img = images.images[within[row.image_id]]
        for c, arm in enumerate(arms):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray")
            sub = df[
                (df.arm == arm)
                & (df.fold == row.fold)
                & (df.image_id == row.image_id)
                & (df.seed == df.seed.min())
            ]
            vis = sub[sub.visible.astype(bool)]
            found = sub[sub.found.astype(bool)]
            ax.scatter(vis.gt_col, vis.gt_row, s=12, c="lime", label="ground truth")
            ax.scatter(
                found.pred_col, found.pred_row, s=14, c="red", marker="x", label="prediction"
            )
            ax.set_xlim(0, img.shape[1] - 1)
            ax.set_ylim(img.shape[0] - 1, 0)
            ax.axis("off")
            if r == 0:
                ax.set_title(arm)
    fig.suptitle(f"Test images ({provenance}): ground truth green, predictions red")
    _save(fig, path)


def realism_table(paths: list[str | os.PathLike]) -> pd.DataFrame:
    """Per-arm mean (and sd over folds) of the Fréchet and intensity distances to the test
    images, each arm's sample of the same size N (`n_images`); `n_folds` counts the folds where
    it could be measured."""
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    g = df.groupby("arm")
    table = pd.DataFrame(
        {
            "n_folds": g.frechet_distance.count(),
            "n_images": g.n_images.first(),
            "n_test_images": g.n_test_images.sum(),
            "frechet_distance": g.frechet_distance.mean(),
            "frechet_sd": g.frechet_distance.std(),
            "intensity_distance": g.intensity_distance.mean(),
            "test_data": g.test_data.first(),
        }
    )
    return table.reindex(_ordered(list(table.index))).reset_index()
