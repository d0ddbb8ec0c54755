"""The main page's one figure: a forest plot of every declared effect with its 95% CI.

One panel per question, one row per stated verdict (loss minus baseline, in each group of the
question), the difference in percentage points for proportions (metrics.PROPORTIONS), else in
the metric's units; the shaded band is the equivalence margin (± the smallest effect of
interest), the colour the verdict. Drawn as SVG (sharp at any zoom) with matplotlib's fixed
hash salt and no date, so the same verdicts give the same bytes.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

import pandas as pd  # noqa: E402

from lossbench.training.metrics import PROPORTIONS  # noqa: E402

WIDTH = 9.0  # inches: 864 px in a browser (96 px per inch), under the 1200 px page
ROW = 0.17  # inches per effect: 16 px, a line of its 8 pt labels
PANEL = 0.75  # inches per panel for its title and axis
COLOURS = {"better": "#1a7f37", "worse": "#cf222e", "equivalent": "#0969da",
           "inconclusive": "#6e7781", "identical": "#8250df", "": "#6e7781"}


def scale(metric: str) -> tuple[float, str]:
    """Factor and unit a difference in `metric` is shown in."""
    return (100.0, "pp") if metric in PROPORTIONS else (1.0, metric)


def effect_label(row: pd.Series, several_groups: bool) -> str:
    where = f"{row['group']}: " if several_groups else ""
    return f"{where}{row['loss']} − {row['baseline']}"


def forest_plot(verdicts: pd.DataFrame) -> bytes:
    """SVG bytes of every row of `verdicts` (verdicts.VERDICT_COLUMNS), questions in page order."""
    questions = list(dict.fromkeys(verdicts["question"]))
    sizes = [int((verdicts["question"] == q).sum()) for q in questions]
    fig = Figure(figsize=(WIDTH, sum(n * ROW + PANEL for n in sizes) + 0.3), layout="constrained")
    axes = fig.subplots(len(questions), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [n * ROW + PANEL for n in sizes]})[:, 0]
    for ax, question in zip(axes, questions):
        rows = verdicts[verdicts["question"] == question].reset_index(drop=True)
        factor, unit = scale(rows["metric"].iloc[0])
        several = rows["group"].nunique() > 1
        y = list(range(len(rows)))[::-1]
        bound = rows["bound"].astype(float).max() * factor
        if not math.isnan(bound):
            ax.axvspan(-bound, bound, color="#ddf4ff", zorder=0)
        ax.axvline(0, color="#444", linewidth=0.8, zorder=1)
        for yi, (_, r) in zip(y, rows.iterrows()):
            colour = COLOURS.get(r["verdict"], COLOURS[""])
            low, high = r["ci_low"] * factor, r["ci_high"] * factor
            if not math.isnan(low):
                ax.plot([low, high], [yi, yi], color=colour, linewidth=1.6, zorder=2)
            ax.plot([r["difference"] * factor], [yi], "o", color=colour, markersize=4, zorder=3)
        ax.set_yticks(y, [effect_label(r, several) for _, r in rows.iterrows()])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        view = rows["view"].iloc[0]
        ax.set_title(f"{question}: {rows['metric'].iloc[0]} ({view} epoch), difference in {unit}",
                     loc="left", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", color="#eee")
    handles = [Line2D([], [], color=c, marker="o", linewidth=1.6, label=v)
               for v, c in COLOURS.items() if v and v in set(verdicts["verdict"])]
    fig.legend(handles=handles, loc="outside upper right", ncols=len(handles), fontsize=8,
               frameon=False)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "lossbench", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def forest_data(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The plotted numbers, in the units drawn."""
    factor = verdicts["metric"].map(lambda m: scale(m)[0])
    out = verdicts[["question", "group", "loss", "baseline", "metric", "view", "verdict"]].copy()
    out["unit"] = verdicts["metric"].map(lambda m: scale(m)[1])
    for column in ("difference", "ci_low", "ci_high", "bound"):
        out[column] = verdicts[column].astype(float) * factor
    return out
