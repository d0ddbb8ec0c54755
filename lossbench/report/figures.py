"""The report's figures as PNG bytes. The only module that imports matplotlib (Agg, no GUI).

Figures are built with matplotlib.figure.Figure (no pyplot global state) and saved without the
"Software" metadata, so the same tables give byte-identical PNGs. Legible at the html page width:
no figure is wider than MAX_WIDTH inches (1200 px at DPI), so none is scaled down, and no text is
smaller than MIN_POINTS (10 px). Drawn at PIXEL_DENSITY x DPI: the html shows each PNG at
1/PIXEL_DENSITY of its pixels (render.py), sharp on a high-density screen and when zoomed.
"""

from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from lossbench.losses import LOSSES  # noqa: E402
from lossbench.training.metrics import CRITERION, MEMORISATION  # noqa: E402
from lossbench.report.groups import LOSS_ORDER  # noqa: E402
from lossbench.report.render import PIXEL_DENSITY  # noqa: E402

DPI = 100  # display pixels per inch in the html
MAX_WIDTH = 12.0  # inches: 1200 px, the html page's width
MIN_POINTS = 7.5  # 10.4 px at DPI
TITLE_POINTS = 10
COLUMNS = 3  # panels per row in grids
# tab20's strong colours, then its light ones: the registry's 17 losses each get their own colour
# (where line style means something else, as in the memorisation figure, colour alone must tell
# the losses apart)
PALETTE = (matplotlib.colormaps["tab20"].colors[0::2] + matplotlib.colormaps["tab20"].colors[1::2])
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "x", "s", "^", "v", "d", "P", "*", "<", ">", "h", "D")
matplotlib.rcParams.update({"font.size": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
                            "ytick.labelsize": 8, "axes.titlesize": TITLE_POINTS})


def style(loss: str, index: int = 0) -> dict:
    """Colour, line style and marker of a loss, fixed by its place in the registry so a loss looks
    the same in every figure; ce/nll and other identical pairs differ in line style and marker."""
    name = loss.split("(")[0]
    k = LOSS_ORDER.index(name) if name in LOSS_ORDER else len(LOSS_ORDER) + index
    if loss != name:  # a variant with other knobs: its loss's colour, another line style
        k += len(LOSS_ORDER)
    return dict(color=PALETTE[k % len(PALETTE)], linestyle=LINESTYLES[k % len(LINESTYLES)],
                marker=MARKERS[k % len(MARKERS)])


def family(loss: str) -> str:
    """'softmax' or 'sigmoid': which criterion values share a scale (BCE averages over N x C)."""
    spec = LOSSES.get(loss.split("(")[0])
    return spec.probabilities.value if spec is not None else "other"


def png(fig: Figure) -> bytes:
    """The figure as a 256-colour PNG: a plot has few colours, and the palette makes the files a
    third the size (the reference report commits every figure twice: in figures/ and inlined in
    report.html). Fast octree is deterministic, so a rerun writes the same bytes. Measured on a
    2400 x 1200 px panel grid: octree 19 ms against median cut's 171 ms (mean error 1/255 a
    channel, 121 kB against 136), and zlib's default level 18 ms against `optimize`'s 133 ms
    for a file 4% larger. The figure is drawn to raw RGBA (the same pixels as a PNG round trip,
    without its ~130 ms of encoding and decoding)."""
    original = fig.dpi
    fig.set_dpi(DPI * PIXEL_DENSITY)
    try:
        rgba, size = FigureCanvasAgg(fig).print_to_buffer()
    finally:
        fig.set_dpi(original)
    pixels = Image.frombuffer("RGBA", size, rgba, "raw", "RGBA", 0, 1)
    palette = pixels.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    palette.save(out, format="PNG")
    return out.getvalue()


def grid(n: int, height: float, columns: int = COLUMNS, **kwargs):
    """A figure of n panels, `columns` to a row, as wide as the page allows."""
    cols = max(1, min(n, columns))
    rows = -(-n // cols)
    fig = Figure(figsize=(min(MAX_WIDTH, 4.0 * cols), height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def plot_band(ax, x, mean, low, high, loss: str, index: int, label: str) -> None:
    """Mean as a line; the CI as two thin lines of the same colour (fills would blend)."""
    s = style(loss, index)
    ax.plot(x, mean, label=label, markersize=4, **s)
    band = np.isfinite(np.asarray(low, dtype=float))
    if band.any():
        for edge in (low, high):
            ax.plot(np.asarray(x)[band], np.asarray(edge)[band], color=s["color"], linewidth=0.6,
                    alpha=0.6, linestyle=s["linestyle"])


def twins(curves: pd.DataFrame, losses: list[str]) -> dict[str, str]:
    """loss -> the earlier loss whose every curve it equals exactly (e.g. nll -> ce)."""
    keyed = {loss: curves[curves["loss"] == loss][["split", "column", "epoch", "mean"]]
             .reset_index(drop=True) for loss in losses}
    out = {}
    for i, loss in enumerate(losses):
        for other in losses[:i]:
            if other not in out and len(keyed[loss]) and keyed[loss].equals(keyed[other]):
                out[loss] = other
                break
    return out


def spans_decades(values: pd.Series) -> bool:
    """Whether a panel's values are positive and span over 10x: then a log axis keeps the small
    curves from flattening to a line under the large ones."""
    finite = values[np.isfinite(values)]
    return len(finite) > 0 and finite.min() > 0 and finite.max() > 10 * finite.min()


MAX_COLOURED = 6  # the baseline and five comparisons: more colours than a reader tells apart
COMPARED = "tab:red"  # the panel's loss in comparison_curves
OTHERS = dict(color="0.78", linewidth=0.8, linestyle="-", marker=None, zorder=1)
OTHER_LOSSES = "other losses"  # the legend entry of every loss drawn in grey (OTHERS)


def in_colour(losses: list[str], highlight: list[str] | None) -> list[str]:
    """The losses a figure draws in colour: the baseline and the question's declared
    comparisons (`highlight`, in that order) that it has; every loss without a declaration."""
    return [loss for loss in (highlight or losses) if loss in losses]


def figure_legend(fig: Figure, axes, **kwargs) -> None:
    """One legend beside every panel: each label once, the grey OTHER_LOSSES last."""
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if OTHER_LOSSES in legend:  # last, under the named ones
        legend[OTHER_LOSSES] = legend.pop(OTHER_LOSSES)
    fig.legend(list(legend.values()), list(legend), loc="outside right upper", fontsize=MIN_POINTS,
               **kwargs)


def learning_curves(curves: pd.DataFrame, losses: list[str], metric: str,
                    highlight: list[str] | None = None) -> bytes:
    """Criterion values per loss family (their scales differ), then the common metrics (test nll
    where logged, test <metric>) across every loss; mean with 95% t-CI lines for the losses in
    `highlight` (the baseline first, then the question's declared comparisons; default every
    loss), each other loss a thin grey line; one legend for every panel, beside them. With more
    than MAX_COLOURED to highlight: comparison_curves, one small panel per comparison."""
    highlight = in_colour(losses, highlight)
    if len(highlight) > MAX_COLOURED:
        return comparison_curves(curves, losses, metric, highlight)
    families = [f for f in ("softmax", "sigmoid", "other") if any(family(l) == f for l in losses)]
    panels = [(split, CRITERION, f, f"{split} criterion, {f} family")
              for f in families for split in ("train", "test")]
    common = [c for c in dict.fromkeys(curves.loc[curves["split"] == "test", "column"])
              if c not in (CRITERION, metric)]
    panels += [("test", column, None, f"test {column}") for column in (*common, metric)
               if ((curves["split"] == "test") & (curves["column"] == column)).any()]
    same = twins(curves, losses)
    fig, axes = grid(len(panels), 3.0)
    for ax, (split, column, fam, title) in zip(axes, panels):
        shown = []
        for i, loss in enumerate(losses):
            c = curves[(curves["loss"] == loss) & (curves["split"] == split)
                       & (curves["column"] == column)]
            if c.empty or (fam is not None and family(loss) != fam):
                continue
            if loss in highlight:
                label = loss + (f" (= {same[loss]})" if loss in same else "")
                plot_band(ax, c["epoch"], c["mean"], c["ci_low"], c["ci_high"], loss, i, label)
            else:
                ax.plot(c["epoch"], c["mean"], label=OTHER_LOSSES, **OTHERS)
            shown.append(c)
        if shown and spans_decades(pd.concat(shown)["mean"]):
            ax.set_yscale("log")
            title += " (log scale)"
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("criterion value" if column == CRITERION else column)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    figure_legend(fig, axes)
    return png(fig)


def comparison_curves(curves: pd.DataFrame, losses: list[str], metric: str,
                      highlight: list[str]) -> bytes:
    """Small multiples of test <metric> per epoch: one panel per comparison (highlight[1:]), the
    loss in one strong colour (the panel's title names it) with its 95% t-CI lines, the
    baseline (highlight[0]) in black, every other loss in grey behind them."""
    baseline, compared = highlight[0], highlight[1:]
    test = curves[(curves["split"] == "test") & (curves["column"] == metric)]
    fig, axes = grid(len(compared), 2.4, columns=4, sharex=True, sharey=True)
    for ax, loss in zip(axes, compared):
        for other in losses:
            if other not in (loss, baseline):
                c = test[test["loss"] == other]
                ax.plot(c["epoch"], c["mean"], **OTHERS)
        b = test[test["loss"] == baseline]
        ax.plot(b["epoch"], b["mean"], color="black", linewidth=1.2, zorder=2)
        c = test[test["loss"] == loss]
        ax.plot(c["epoch"], c["mean"], color=COMPARED, linewidth=1.6, zorder=3)
        for edge in ("ci_low", "ci_high"):
            ax.plot(c["epoch"], c[edge], color=COMPARED, linewidth=0.6, alpha=0.7, zorder=3)
        ax.set_title(loss)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[-min(4, len(axes)):]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[::4]:
        ax.set_ylabel(f"test {metric}")
    fig.legend(handles=[Line2D([], [], color="black", linewidth=1.2, label=f"baseline {baseline}"),
                        Line2D([], [], color=COMPARED, linewidth=1.6,
                               label="the panel's loss, 95% t-CI lines"),
                        Line2D([], [], color=OTHERS["color"], linewidth=OTHERS["linewidth"],
                               label=OTHER_LOSSES)],
               loc="outside lower center", ncols=3)
    return png(fig)


def final_metric(final: pd.DataFrame, points: pd.DataFrame, metric: str) -> bytes:
    """Mean per loss with its 95% t-CI as error bar; each seed as a small grey dot."""
    fig = Figure(figsize=(min(MAX_WIDTH, 1.6 + 0.8 * len(final)), 3.6), layout="constrained")
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
    ax.set_xticks(range(len(final)), list(final["loss"]), rotation=45 if len(final) > 6 else 0,
                  ha="right" if len(final) > 6 else "center")
    ax.set_xlim(-0.6, len(final) - 0.4)
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"final test {metric}: mean, 95% CI, seeds")
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def reliability(bins: pd.DataFrame, ece: pd.DataFrame, losses: list[str],
                multi_label: bool = False) -> bytes:
    """Per loss: pooled fraction correct (multi-label: fraction positive) vs mean predicted
    probability per bin, the diagonal, in the legend the ECE and what a perfectly calibrated
    model scores at this test size (tables.ece_uncertainty); under it the bin counts. A loss
    whose outputs are not probabilities says so in its title: its diagram shows a read-out."""
    cols = min(len(losses), 4)
    rows = -(-len(losses) // cols)
    fig = Figure(figsize=(min(MAX_WIDTH, 3.0 * cols), 3.9 * rows), layout="constrained")
    axes = fig.subplots(2 * rows, cols, squeeze=False, height_ratios=[3, 1] * rows)
    x_label = "predicted probability" if multi_label else "confidence (top-class probability)"
    y_label = "fraction positive" if multi_label else "fraction correct"
    for k in range(rows * cols):
        diagram, counts = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
        if k >= len(losses):
            diagram.set_visible(False), counts.set_visible(False)
            continue
        loss = losses[k]
        colour = style(loss, k)["color"]
        b = bins[(bins["loss"] == loss) & (bins["count"] > 0)]
        e = ece[ece["loss"] == loss]
        width = (b["bin_upper"] - b["bin_lower"]).to_numpy()
        diagram.bar(b["bin_lower"], b["accuracy"], width=width, align="edge", alpha=0.35,
                    color=colour, edgecolor="0.3", linewidth=0.5)
        diagram.plot(b["confidence"], b["accuracy"], marker="o", markersize=3, color=colour,
                     label=f"ECE {e['pooled_ece'].iloc[0]:.4f}" if len(e) else loss)
        floor = e["ece_floor"].iloc[0] if len(e) and "ece_floor" in e else np.nan
        diagram.plot([0, 1], [0, 1], color="0.4", linestyle=":", linewidth=1,
                     label="calibrated" + (f": ECE {floor:.4f}" if np.isfinite(floor) else ""))
        readout = len(e) and "probabilistic" in e and not e["probabilistic"].iloc[0]
        diagram.set(xlim=(0, 1), ylim=(0, 1),
                    title=loss + (" (outputs not probabilities)" if readout else ""))
        diagram.set_ylabel(y_label)
        diagram.legend(loc="upper left")
        counts.bar(b["bin_lower"], b["count"], width=width, align="edge", color=colour,
                   edgecolor="0.3", linewidth=0.5)
        counts.set(xlim=(0, 1))
        counts.set_yscale("log")
        counts.set_xlabel(x_label)
        counts.set_ylabel("count")
    return png(fig)


def grad_norm_curves(curves: pd.DataFrame, panels: list[str], losses: list[str],
                     diverged: pd.DataFrame | None = None) -> bytes:
    """Gradient norm vs step, one panel per stress setting: median over runs, min-max as thin
    lines, log scale; an x at the top marks the first non-finite step of each diverged run."""
    fig, axes = grid(len(panels), 2.8, sharey=True)
    finite = curves[["median", "min", "max"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    # the axis spans the healthy range and two decades below it; a norm under that (a saturated
    # loss's vanishing or exactly zero gradient, the finding here) is drawn on the bottom edge,
    # and a few huge norms are cut at the 99th percentile so they do not flatten the rest
    floor = np.quantile(finite, 0.01) / 100 if len(finite) else 1e-12
    top = np.quantile(finite, 0.99) * 2 if len(finite) else 1.0
    for ax, setting in zip(axes, panels):
        for i, loss in enumerate(losses):
            c = curves[(curves["setting"] == setting) & (curves["loss"] == loss)]
            if not c.empty:
                plot_band(ax, c["step"], *(np.maximum(c[k].to_numpy(dtype=float), floor)
                                           for k in ("median", "min", "max")), loss, i, loss)
            if diverged is not None:
                d = diverged[(diverged["setting"] == setting) & (diverged["loss"] == loss)]
                if len(d):
                    ax.plot(d["step"], np.ones(len(d)), transform=ax.get_xaxis_transform(),
                            linestyle="none", marker="x", markersize=8, color=style(loss, i)["color"])
        ax.set_yscale("log")
        ax.set_title(textwrap.fill(setting, 48), fontsize=TITLE_POINTS)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(floor / 2, top)
    axes[0].set_ylabel("gradient norm")
    handles = [Line2D([], [], **{**style(loss, i), "markersize": 4}, label=loss)
               for i, loss in enumerate(losses)]
    handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none",
                          label="first non-finite step (diverged)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5))
    return png(fig)


def heatmap(cells: pd.DataFrame, metric: str) -> bytes:
    """Stress setting (rows) x loss (columns), one panel per `panel` value (the lr). Colour =
    mean final metric of completed runs, zoomed to the range of the cells above Tukey's lower
    fence (collapsed cells would flatten the rest); text = mean ± sd, n, how many diverged."""
    panels = list(dict.fromkeys(cells["panel"]))
    losses = list(dict.fromkeys(cells["loss"]))
    rows = list(dict.fromkeys(cells["row"]))
    means = cells["mean"].to_numpy(dtype=float)
    finite = means[np.isfinite(means)]
    q1, q3 = np.quantile(finite, [0.25, 0.75]) if len(finite) else (0.0, 1.0)
    low = max(float(finite.min()), q1 - 1.5 * (q3 - q1)) if len(finite) else 0.0  # Tukey's fence
    high = float(finite.max()) if len(finite) else 1.0
    if high - low < 1e-3:
        low, high = low - 0.01, high + 0.01
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85", under="0.55")
    # Room for the row labels (~0.08 in a character), the colour bar and 1.2 in a cell at least:
    # one loss in one panel would leave its cells none (matplotlib warns and drops the layout)
    labels = 0.08 * max((len(str(row)) for row in rows), default=0)
    width = min(MAX_WIDTH, max(1.6 + 1.6 * len(losses) * len(panels), labels + 1.6 + 1.2 * len(losses) * len(panels)))
    fig = Figure(figsize=(width, 1.2 + 0.55 * len(rows)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, panel in zip(axes, panels):
        part = cells[cells["panel"] == panel].set_index(["row", "loss"])
        grid_values = np.full((len(rows), len(losses)), np.nan)
        for (i, row), (j, loss) in ((a, b) for a in enumerate(rows) for b in enumerate(losses)):
            if (row, loss) not in part.index:
                continue
            cell = part.loc[(row, loss)]
            grid_values[i, j] = cell["mean"]
            ax.text(j, i, cell_text(cell), ha="center", va="center", fontsize=MIN_POINTS,
                    color="white" if np.isfinite(cell["mean"]) and cell["mean"] < (low + high) / 2
                    else "black")
        image = ax.imshow(np.ma.masked_invalid(grid_values), cmap=cmap, vmin=low, vmax=high,
                          aspect="auto")
        ax.set_xticks(range(len(losses)), losses)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(panel)
    fig.colorbar(image, ax=list(axes), shrink=0.8, extend="min", label=f"mean final test {metric}")
    return png(fig)


def cell_text(cell) -> str:
    if cell["n_completed"] == 0:
        return f"all {cell['n']} diverged" if cell["n_diverged"] == cell["n"] else "none completed"
    text = f"{cell['mean']:.3f}"
    if np.isfinite(cell["sd"]):
        text += f" ± {cell['sd']:.3f}"
    text += f"\nn={cell['n_completed']}"
    if cell["n_diverged"]:
        text += f", {cell['n_diverged']}/{cell['n']} div."
    return text


def condition_curves(points: pd.DataFrame, x_label: str, y_label: str, log_x: bool = False,
                     highlight: list[str] | None = None) -> bytes:
    """A metric vs a condition (noise rate, imbalance ratio) per loss, one panel per `panel`
    value: mean with 95% t-CI error bars over seeds for the losses in `highlight` (the baseline,
    then the question's declared comparisons; default every loss), each other loss a thin grey
    line without error bars, as in learning_curves."""
    panels = list(dict.fromkeys(points["panel"]))
    fig, axes = grid(len(panels), 3.4, sharey=True)
    losses = list(dict.fromkeys(points["loss"]))
    highlight = in_colour(losses, highlight)
    for ax, panel in zip(axes, panels):
        for i, loss in enumerate(losses):
            p = points[(points["panel"] == panel) & (points["loss"] == loss)].sort_values("x")
            if p.empty:
                continue
            if loss not in highlight:
                ax.plot(p["x"], p["mean"], label=OTHER_LOSSES, **OTHERS)
                continue
            err = np.vstack([p["mean"] - p["ci_low"], p["ci_high"] - p["mean"]])
            ax.errorbar(p["x"], p["mean"], yerr=np.where(np.isfinite(err), err, 0), capsize=3,
                        markersize=4, label=loss, zorder=2, **style(loss, i))
        if log_x:  # ticks at the values run, as plain numbers
            ax.set_xscale("log")
            xs = sorted(set(points["x"]))
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(panel)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(y_label)
    figure_legend(fig, axes)
    return png(fig)


def memorisation(curves: pd.DataFrame, highlight: list[str] | None = None) -> bytes:
    """Per noise setting: accuracy of the flipped training examples against their true label
    (solid: resisted) and their noisy label (dashed: memorised), mean over seeds, per loss; the
    losses in `highlight` (baseline, declared comparisons; default every loss) in colour, every
    other loss thin and grey, as in learning_curves."""
    noisy, true = MEMORISATION
    panels = list(dict.fromkeys(curves["panel"]))
    losses = list(dict.fromkeys(curves["loss"]))
    highlight = in_colour(losses, highlight)
    # the line style says true vs noisy label: colour alone tells the losses apart (PALETTE)
    lines = {loss: {"color": style(loss, i)["color"], "zorder": 2} if loss in highlight else
             {"color": OTHERS["color"], "linewidth": OTHERS["linewidth"], "zorder": 1}
             for i, loss in enumerate(losses)}
    fig, axes = grid(len(panels), 3.0, sharey=True)
    for ax, panel in zip(axes, panels):
        for loss in losses:
            for column, line in ((true, "-"), (noisy, "--")):
                c = curves[(curves["panel"] == panel) & (curves["loss"] == loss)
                           & (curves["column"] == column)]
                ax.plot(c["epoch"], c["mean"], linestyle=line, **lines[loss])
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on flipped examples")
    handles = [Line2D([], [], **lines[loss], label=loss) for loss in highlight]
    if len(highlight) < len(losses):
        handles.append(Line2D([], [], color=OTHERS["color"], linewidth=OTHERS["linewidth"],
                              label=OTHER_LOSSES))
    handles += [Line2D([], [], color="0.3", linestyle="-", label="vs true label (resisted)"),
                Line2D([], [], color="0.3", linestyle="--", label="vs noisy label (memorised)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5))
    return png(fig)


def ap_vs_frequency(points: pd.DataFrame) -> bytes:
    """Per-label average precision against the label's training positives, mean over seeds: one
    marker per (loss, label), the label's id beside the first loss's marker."""
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for i, loss in enumerate(dict.fromkeys(points["loss"])):
        p = points[points["loss"] == loss].sort_values("train_count")
        s = style(loss, i)
        ax.scatter(p["train_count"], p["ap"], marker=s["marker"], color=s["color"], label=loss)
        if i == 0:
            for count, ap, label in zip(p["train_count"], p["ap"], p["class"]):
                ax.annotate(str(label), (count, ap), textcoords="offset points", xytext=(4, 4),
                            fontsize=MIN_POINTS)
    ax.set_xlabel("training positives of the label")
    ax.set_ylabel("test average precision")
    ax.set_title("per-label AP vs label frequency")
    ax.grid(alpha=0.3)
    ax.legend()
    return png(fig)
