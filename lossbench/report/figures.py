"""The report's figures as PNG bytes. The only module that imports matplotlib (Agg, no GUI).

Figures are built with matplotlib.figure.Figure (no pyplot global state) and saved without the
"Software" metadata, so the same tables give byte-identical PNGs.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lossbench.report.groups import LOSS_ORDER  # noqa: E402

DPI = 100
STYLE = {  # ce and nll give identical numbers: dashed nll lets both lines show
    "ce": dict(color="C0", linestyle="-", marker="o"),
    "nll": dict(color="C1", linestyle="--", marker="x"),
    "bce": dict(color="C2", linestyle="-", marker="s"),
    "bce_logits": dict(color="C3", linestyle="-.", marker="^"),
}


def style(loss: str, index: int) -> dict:
    return STYLE.get(loss, dict(color=f"C{len(LOSS_ORDER) + index % 6}", linestyle=":", marker="d"))


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def learning_curves(curves: pd.DataFrame, losses: list[str], metric: str) -> bytes:
    """Three panels (train loss, test loss, test metric) vs epoch; band = mean +- 95% t-CI."""
    panels = [("train", "loss_value", "train loss"), ("test", "loss_value", "test loss"),
              ("test", metric, f"test {metric}")]
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (split, column, title) in zip(axes, panels):
        for i, loss in enumerate(losses):
            c = curves[(curves["loss"] == loss) & (curves["split"] == split)
                       & (curves["column"] == column)]
            if c.empty:
                continue
            s = style(loss, i)
            ax.plot(c["epoch"], c["mean"], label=loss, markersize=4, **s)
            band = c["ci_low"].notna()
            if band.any():
                ax.fill_between(c["epoch"][band], c["ci_low"][band], c["ci_high"][band],
                                color=s["color"], alpha=0.2, linewidth=0)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return png(fig)


def final_metric(final: pd.DataFrame, points: pd.DataFrame, metric: str) -> bytes:
    """Mean per loss with its 95% t-CI as error bar; each seed as a small grey dot."""
    fig = Figure(figsize=(1.6 + 1.2 * len(final), 3.6), layout="constrained")
    ax = fig.subplots()
    for i, row in enumerate(final.itertuples(index=False)):
        loss = row.loss
        seeds = points[points["loss"] == loss]["value"].to_numpy()
        offsets = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else np.zeros(len(seeds))
        ax.scatter(i + 0.25 + offsets, seeds, s=10, color="0.55", zorder=2)
        mean, low, high = (getattr(row, f"{metric}_{k}") for k in ("mean", "ci_low", "ci_high"))
        err = None if np.isnan(low) else [[mean - low], [high - mean]]
        ax.errorbar([i], [mean], yerr=err, fmt="o", capsize=5, color=style(loss, i)["color"],
                    zorder=3)
    ax.set_xticks(range(len(final)), list(final["loss"]))
    ax.set_xlim(-0.6, len(final) - 0.4)
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"final test {metric}: mean, 95% CI, seeds")
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def reliability(bins: pd.DataFrame, ece: pd.DataFrame, losses: list[str]) -> bytes:
    """One panel per loss: pooled accuracy vs confidence per bin, the diagonal, ECE in the legend."""
    fig = Figure(figsize=(3.2 * len(losses), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(losses), sharey=True))
    for i, (ax, loss) in enumerate(zip(axes, losses)):
        b = bins[(bins["loss"] == loss) & (bins["count"] > 0)]
        e = ece[ece["loss"] == loss]["pooled_ece"]
        label = f"{loss}, ECE {e.iloc[0]:.4f}" if len(e) else loss
        width = (b["bin_upper"] - b["bin_lower"]).to_numpy()
        ax.bar(b["bin_lower"], b["accuracy"], width=width, align="edge", alpha=0.35,
               color=style(loss, i)["color"], edgecolor="0.3", linewidth=0.5)
        ax.plot(b["confidence"], b["accuracy"], marker="o", markersize=3, label=label,
                color=style(loss, i)["color"])
        ax.plot([0, 1], [0, 1], color="0.4", linestyle=":", linewidth=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(loss)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("accuracy")
    return png(fig)


def epoch_time(times: pd.DataFrame) -> bytes:
    """Mean train time per epoch per loss, 95% t-CI error bars."""
    fig = Figure(figsize=(1.6 + 1.2 * len(times), 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(times))
    mean = times["epoch_time_s_mean"].to_numpy()
    low, high = times["ci_low"].to_numpy(), times["ci_high"].to_numpy()
    err = np.where(np.isnan(low), 0, [mean - low, high - mean])
    ax.bar(x, mean, yerr=err, capsize=5,
           color=[style(loss, i)["color"] for i, loss in enumerate(times["loss"])])
    ax.set_xticks(x, list(times["loss"]))
    ax.set_ylabel("seconds per epoch (train)")
    ax.set_title("time per epoch: mean, 95% CI")
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def grad_norm_curves(curves: pd.DataFrame, panels: list[str], losses: list[str]) -> bytes:
    """Gradient norm vs step, one panel per stress setting; line = median over seeds,
    band = min-max over seeds (finite values only), log scale."""
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.4 * cols, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax, setting in zip(axes, panels):
        for i, loss in enumerate(losses):
            c = curves[(curves["setting"] == setting) & (curves["loss"] == loss)]
            if c.empty:
                continue
            s = style(loss, i)
            ax.plot(c["step"], c["median"], label=loss, color=s["color"], linestyle=s["linestyle"])
            ax.fill_between(c["step"], c["min"], c["max"], color=s["color"], alpha=0.2, linewidth=0)
        ax.set_yscale("log")
        ax.set_title(setting, fontsize=8)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].set_ylabel("gradient norm")
    axes[0].legend(fontsize=7)
    return png(fig)


def heatmap(values: pd.DataFrame, labels: pd.DataFrame, title: str) -> bytes:
    """Stress setting (rows) x loss (columns) grid: colour = value in [0, 1] (grey where none),
    text = labels."""
    fig = Figure(figsize=(3.5 + 1.6 * values.shape[1], 1.3 + 0.32 * values.shape[0]),
                 layout="constrained")
    ax = fig.subplots()
    grid = np.ma.masked_invalid(values.to_numpy(dtype=float))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for (i, j), text in np.ndenumerate(labels.to_numpy()):
        dark = not np.ma.is_masked(grid[i, j]) and grid[i, j] < 0.6
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(values.shape[1]), list(values.columns))
    ax.set_yticks(range(values.shape[0]), list(values.index), fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return png(fig)
