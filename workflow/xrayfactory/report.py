"""The study's tables and figures, from per-run prediction files (and the test images)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from xrayfactory.atomic import atomic_path
from xrayfactory.imageset import ImageSet
from xrayfactory.metrics import paired_vs, per_landmark, summary, with_errors
from xrayfactory.splits import image_ids

ARM_ORDER = ["baseline", "real", "drr", "synth3d", "synth2d"]


def _ordered(arms: list[str]) -> list[str]:
    return [a for a in ARM_ORDER if a in arms] + sorted(set(arms) - set(ARM_ORDER))


def metrics_table(df: pd.DataFrame, thresholds_mm: list[float], provenance: str) -> pd.DataFrame:
    rows = []
    for arm in _ordered(df.arm.unique().tolist()):
        sub = df[df.arm == arm]
        rows.append(
            {
                "arm": arm,
                **summary(sub, thresholds_mm),
                **paired_vs(df, arm, "real"),
                "test_data": provenance,
            }
        )
    return pd.DataFrame(rows)


def _fmt(v: object) -> str:
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


def write_report(
    predictions: list[str | os.PathLike],
    test_images: ImageSet,
    out_dir: str | os.PathLike,
    thresholds_mm: list[float],
) -> pd.DataFrame:
    """metrics.csv/.md/.tex, per_landmark.csv and figures under `out_dir`."""
    out = Path(out_dir)
    df = with_errors(pd.concat([pd.read_csv(p) for p in predictions], ignore_index=True))
    proxy = bool(test_images.attrs.get("proxy"))
    provenance = "proxy-real (demo acquisition model)" if proxy else "real"
    n_test = df.groupby("fold").image_id.nunique().sum()
    caption = (
        f"Landmark error on held-out {provenance} X-rays: {n_test} "
        f"test images, {df.fold.nunique()} folds, {df.seed.nunique()} seed(s); errors in mm at the "
        f"detector (_iso: at the isocentre); paired columns compare each arm with `real`."
    )
    table = metrics_table(df, thresholds_mm, provenance)
    with atomic_path(out / "metrics.csv") as tmp:
        table.to_csv(tmp, index=False)
    short = table[
        [
            "arm",
            "n_images",
            "mean_mm",
            "sd_mm",
            "median_mm",
            "ci95_low_mm",
            "ci95_high_mm",
            *[c for c in table if c.startswith("success_")],
            "detection_rate",
            "false_positive_rate",
            "diff_mean_mm",
            "wilcoxon_p",
        ]
    ]
    _write(out / "metrics.md", _markdown(short, caption))
    _write(out / "metrics.tex", _latex(short, caption))
    lm = per_landmark(df)
    lm["test_data"] = provenance
    with atomic_path(out / "per_landmark.csv") as tmp:
        lm.to_csv(tmp, index=False)
    arms = _ordered(df.arm.unique().tolist())
    _cumulative(df, arms, provenance, out / "cumulative_error.png")
    _per_landmark_bars(lm, arms, provenance, out / "per_landmark.png")
    _examples(df, arms, test_images, provenance, out / "examples.png")
    return table


def _cumulative(df: pd.DataFrame, arms: list[str], provenance: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    top = np.nanpercentile(df.err_mm, 98) if df.err_mm.notna().any() else 1.0
    for arm in arms:
        e = np.sort(df.loc[df.arm == arm, "err_mm"].dropna())
        if len(e):
            ax.step(e, np.arange(1, len(e) + 1) / len(e), where="post", label=arm)
    ax.set(
        xlabel="error at the detector (mm)",
        ylabel="fraction of detected landmarks",
        xlim=(0, top),
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
    images; `real` (its own training images) is the reference."""
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    g = df.groupby("arm")
    table = pd.DataFrame(
        {
            "n_folds": g.fold.nunique(),
            "n_images": g.n_images.sum(),
            "frechet_distance": g.frechet_distance.mean(),
            "frechet_sd": g.frechet_distance.std(),
            "intensity_distance": g.intensity_distance.mean(),
            "test_data": g.test_data.first(),
        }
    )
    return table.reindex(_ordered(list(table.index))).reset_index()


def concat_tables(paths: list[str | os.PathLike], keys: list[str]) -> pd.DataFrame:
    """Per-fold tables stacked, with a `mean` block averaged over folds per `keys`."""
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    mean = df.drop(columns="fold").groupby(keys, sort=False).mean(numeric_only=True)
    mean = mean.reset_index()
    mean.insert(0, "fold", "mean")
    return pd.concat([df.astype({"fold": str}), mean], ignore_index=True)
