"""One panel per loss: loss value and |gradient| against z, per dtype, on a log scale; softmax-
family losses in one block of small multiples, sigmoid-family losses in another.

Legible where the report shows it: WIDTH inches at 100 px an inch (the html page's 1200 px),
drawn at DPI (twice that: the report shows a PNG at half its pixels), no text under 9 pt (12 px)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .exact import exact
from .probed import is_binary

COLORS = {"float64": "black", "float32": "tab:blue", "bfloat16": "tab:green", "float16": "tab:red"}
YLIM = (1e-46, 1e16)  # down to float32's smallest subnormal; headroom above the data for the rugs


def _mark(ax, z: np.ndarray, y_axes: float, marker: str, color: str) -> None:
    """Rug at a fixed height: inf, NaN and exact zeros have no place on a log axis."""
    if z.size:
        ax.plot(z, np.full(z.shape, y_axes), marker, color=color, ms=3, transform=ax.get_xaxis_transform())


def _panel(ax, g: pd.DataFrame, loss: str) -> None:
    from matplotlib.ticker import LogLocator

    z = np.unique(g.z.to_numpy())
    ref_value, ref_grad = exact(loss, z)
    ax.plot(z, ref_value, color="0.6", lw=3, alpha=0.5)
    ax.plot(z, np.abs(ref_grad), color="0.6", lw=3, alpha=0.5, ls="--")
    for i, (dtype, d) in enumerate(g.groupby("dtype", observed=True, sort=False)):
        color = COLORS.get(dtype, None)
        lw = 2.2 - 0.4 * i  # later dtypes drawn thinner on top, so coinciding curves stay visible
        ax.plot(d.z, d.value.where(d.value > 0), color=color, lw=lw)
        ax.plot(d.z, np.abs(d.grad).where(d.grad != 0), color=color, lw=lw, ls="--")
        _mark(ax, d.z[~d.grad_finite].to_numpy(), 0.975 - 0.025 * i, "x", color)
        _mark(ax, d.z[~d.value_finite].to_numpy(), 0.875 - 0.025 * i, "^", color)
        _mark(ax, d.z[d.grad == 0].to_numpy(), 0.02 + 0.025 * i, "|", color)
    ax.set_yscale("log")
    ax.set_ylim(*YLIM)
    ax.yaxis.set_major_locator(LogLocator(numticks=5))  # 1e-40, 1e-20, ...: room for 9 pt labels
    ax.set_title(loss)
    ax.grid(True, which="major", alpha=0.3)


def _legend(ax, dtypes) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=COLORS.get(d), label=d) for d in dtypes]
    handles += [
        Line2D([], [], color="0.6", lw=3, alpha=0.5, label="exact (float64 closed form)"),
        Line2D([], [], color="k", label="loss value"),
        Line2D([], [], color="k", ls="--", label="|d loss / d z|"),
        Line2D([], [], color="k", marker="x", ls="", label="gradient inf/NaN (rug at top)"),
        Line2D([], [], color="k", marker="^", ls="", label="loss inf/NaN (rug below it)"),
        Line2D([], [], color="k", marker="|", ls="", label="gradient exactly 0 (bottom rug)"),
    ]
    ax.legend(handles=handles, loc="center", frameon=False)
    ax.axis("off")


NCOLS = 4
WIDTH = 12.0  # inches
DPI = 200
FONTS = {"font.size": 10, "axes.titlesize": 11, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 9, "figure.titlesize": 12}
FAMILIES = {  # block title -> which losses
    "softmax family: K = 10 logits, the target's z, the others 0": lambda loss: not is_binary(loss),
    "sigmoid family: one logit z, target 1": is_binary,
}


def _block(sub, df: pd.DataFrame, losses: list[str], title: str, legend_dtypes) -> None:
    slots = len(losses) + (legend_dtypes is not None)
    nrows = -(-slots // NCOLS)
    axes = sub.subplots(nrows, NCOLS, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, loss in zip(axes, losses):
        _panel(ax, df[df.loss == loss], loss)
    rest = list(axes[len(losses):])
    if legend_dtypes is not None:
        _legend(rest.pop(0), legend_dtypes)
    for ax in rest:
        ax.axis("off")
    for ax in axes[-NCOLS:]:
        ax.xaxis.set_tick_params(labelbottom=True)
    sub.supxlabel("z (margin of the target logit; < 0 = confidently wrong)")
    sub.suptitle(title, fontweight="bold")


def plot_probe(df: pd.DataFrame, path) -> Path:
    """Write the figure to `path` (PNG). matplotlib is imported here so the probe runs without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = list(df.loss.cat.categories)
    blocks = [(title, [loss for loss in losses if member(loss)]) for title, member in FAMILIES.items()]
    blocks = [(title, members) for title, members in blocks if members]
    rows = [-(-(len(members) + (i == 0)) // NCOLS) for i, (_, members) in enumerate(blocks)]
    with matplotlib.rc_context(FONTS):
        fig = plt.figure(figsize=(WIDTH, 2.6 * sum(rows) + 0.9 * len(blocks)), layout="constrained")
        subs = fig.subfigures(len(blocks), 1, height_ratios=rows, squeeze=False).ravel()
        for i, (sub, (title, members)) in enumerate(zip(subs, blocks)):
            _block(sub, df, members, title, list(df["dtype"].cat.categories) if i == 0 else None)
        fig.suptitle("Loss and gradient of each loss against the target-logit margin z, per dtype")
        path = Path(path)
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
