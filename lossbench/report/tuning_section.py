"""What a tuned study did per loss, from DIR/tuning.parquet (lossbench.runs.tuning_trials): the budget, the
search space, the setting chosen and the validation value it was chosen on; and which collected
runs are its trials (never compared) and which keys its comparison runs were tuned on."""

from __future__ import annotations

import re

import pandas as pd

from lossbench.report.document import Paragraph, Table
from lossbench.report.groups import TUNED_KEYS, format_value, loss_sort_key
from lossbench.report.tables import fmt, fmt_ci

TUNING_TRIAL = "tuning_trial"  # summary column: the run is a trial of a tuned sweep
ASSIGNMENT = re.compile(r",(?=[\w.]+=)")  # `optim.lr=0.003,loss.gamma=2`: split before each key


def tuned_keys(settings: pd.Series) -> list[str]:
    """The keys of tuning.parquet `setting` values, sorted."""
    return sorted({item.split("=", 1)[0] for setting in settings.dropna()
                   for item in ASSIGNMENT.split(setting) if "=" in item})


def mark_tuning(summary: pd.DataFrame, tuning: pd.DataFrame | None) -> pd.DataFrame:
    """`summary` with TUNING_TRIAL (the run is listed in a tuning.parquet) and TUNED_KEYS (for the
    other runs of a DIR that holds a tuning.parquet, its comparison runs: the keys tuned there,
    comma-separated; else empty). Both tables' `run` and `input_dir` come from load.load."""
    marked = summary.assign(**{TUNING_TRIAL: False, TUNED_KEYS: ""})
    if tuning is None or tuning.empty:
        return marked
    marked[TUNING_TRIAL] = marked["run"].isin(tuning["run"])
    for input_dir, trials in tuning.groupby("input_dir", sort=False):
        compared = (marked["input_dir"] == input_dir) & ~marked[TUNING_TRIAL]
        marked.loc[compared, TUNED_KEYS] = ",".join(tuned_keys(trials["setting"]))
    return marked


def tuning_table(tuning: pd.DataFrame) -> pd.DataFrame:
    """One row per loss, in the report's loss order: `loss, budget, trials` (how many ran into
    the table), `space`, `chosen` (the setting; empty when no trial completed with a validation
    value), `val_metric, val_value, selected_epoch` of the chosen trial."""
    rows = []
    for loss, trials in tuning.groupby("loss_name", sort=False):
        chosen = trials[trials["chosen"]]
        best = chosen.iloc[0] if len(chosen) else None
        rows.append({
            "loss": loss, "budget": int(trials["budget"].iloc[0]), "trials": len(trials),
            "space": trials["space"].iloc[0],
            "chosen": best["setting"] if best is not None else "",
            "val_metric": best["val_metric"] if best is not None else "",
            "val_value": best["val_value"] if best is not None else float("nan"),
            "selected_epoch": best["selected_epoch"] if best is not None else pd.NA,
        })
    table = pd.DataFrame(rows, columns=["loss", "budget", "trials", "space", "chosen", "val_metric",
                                        "val_value", "selected_epoch"])
    return table.sort_values("loss", key=lambda losses: losses.map(loss_sort_key), kind="stable",
                             ignore_index=True)


def tuning_caption(tuning: pd.DataFrame) -> str:
    budgets = ", ".join(sorted({format_value(b) for b in tuning["budget"]}))
    seeds = ", ".join(sorted({format_value(s) for s in tuning["seed"]}))
    metrics = ", ".join(sorted(set(tuning["val_metric"].dropna())))
    return (f"Tuning per loss: a budget of {budgets} trials (a grid over the loss's space) on seed "
            f"{seeds}; the setting chosen is the completed trial with the best validation "
            f"{metrics or 'primary metric'} at its selected epoch, never anything measured on test.")


def show_tuning(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "loss": table["loss"], "budget": table["budget"].astype(str),
        "trials": table["trials"].astype(str), "space": table["space"].map(lambda s: f"`{s}`"),
        "chosen": table["chosen"].map(lambda s: f"`{s}`" if s else "none completed"),
        "validation": [f"{m} {fmt(v, '.4f')}" if m else "—"
                       for m, v in zip(table["val_metric"], table["val_value"])],
        "selected epoch": table["selected_epoch"].map(lambda e: "—" if pd.isna(e) else str(int(e))),
    })


def primary_cells(r, view: str) -> pd.DataFrame:
    """Per loss of a group's results (sections.GroupResults): its primary metric's mean and CI in
    `view`."""
    g, metric = r.group, r.group.kind.metric
    final = r.final[r.final["view"] == view] if "view" in r.final else r.final.iloc[0:0]
    rows = [{"dataset": g.dataset, "data_source": g.data_source, "task": g.task,
             "loss_name": f["loss"].split("(")[0], "loss": f["loss"], "metric": metric,
             "view": view, "n_seeds": int(f["n_seeds"]), "mean": f[f"{metric}_mean"],
             "ci_low": f[f"{metric}_ci_low"], "ci_high": f[f"{metric}_ci_high"], "group": r.title}
            for _, f in final.iterrows()]
    return pd.DataFrame(rows, columns=["dataset", "data_source", "task", "loss_name", "loss",
                                       "metric", "view", "n_seeds", "mean", "ci_low", "ci_high",
                                       "group"])


def shared_vs_tuned(tuned: list, shared: list) -> pd.DataFrame:
    """Per loss of a tuned group, its primary metric there and in each shared-setting group of the
    same data and task: one row per (tuned group, shared group, loss), losses matched by name (a
    tuned knob relabels `focal` as `focal(gamma=1)`). Both in the `selected` view where both
    groups have it, else `last`, so each row compares like with like."""
    parts = []
    for t in tuned:
        for s in shared:
            if (s.group.dataset, s.group.data_source, s.group.task) != (
                    t.group.dataset, t.group.data_source, t.group.task):
                continue
            view = "selected" if "selected" in set(t.views.frames) & set(s.views.frames) else "last"
            parts.append(primary_cells(s, view).merge(
                primary_cells(t, view), suffixes=("_shared", "_tuned"),
                on=["dataset", "data_source", "task", "loss_name", "metric", "view"]))
    if not parts:
        return pd.DataFrame()
    data = pd.concat(parts, ignore_index=True)
    data = data.assign(loss_key=data["loss_tuned"].map(loss_sort_key))
    return (data.sort_values(["group_tuned", "group_shared", "loss_key"], kind="stable")
            .drop(columns="loss_key").reset_index(drop=True))


def show_shared_vs_tuned(data: pd.DataFrame) -> pd.DataFrame:
    def cell(row, side):
        return (f"`{row[f'loss_{side}']}` "
                + fmt_ci(row[f"mean_{side}"], row[f"ci_low_{side}"], row[f"ci_high_{side}"], ".4f")
                + f" (n={row[f'n_seeds_{side}']})")
    return pd.DataFrame({
        "loss": data["loss_name"], "metric": data["metric"] + " (" + data["view"] + ")",
        "shared setting": [f"{row['group_shared']}: {cell(row, 'shared')}" for _, row in data.iterrows()],
        "tuned per loss": [cell(row, "tuned") for _, row in data.iterrows()],
    })


def tuning_blocks(tuning: pd.DataFrame | None) -> list:
    """How many trials were read (and left out of the comparisons), then the tuning table."""
    if tuning is None or tuning.empty:
        return []
    input_dirs = ", ".join(f"`{label}`" for label in dict.fromkeys(tuning["input_dir"]))
    table = tuning_table(tuning)
    return [Paragraph(f"{len(tuning)} tuning trials read from the tuning.parquet of {input_dirs}: "
                      "they chose each loss's setting and are left out of every comparison; the "
                      "comparison below runs each loss at its chosen setting on the comparison "
                      "seeds."),
            Table("tuning", show_tuning(table), table, tuning_caption(tuning))]


def shared_vs_tuned_blocks(tuned: list, shared: list) -> list:
    """Each loss at the shared setting beside its tuned setting, where the report has both."""
    data = shared_vs_tuned(tuned, shared)
    if data.empty:
        return []
    return [Table("shared-vs-tuned", show_shared_vs_tuned(data), data,
                  "Each loss's primary test metric at the shared setting and at its own tuned "
                  "setting, same data: mean [95% t-CI] over seeds, n = seeds; the view (in "
                  "brackets) is `selected` where both groups have validation rows, else `last`. "
                  "Unpaired: the two columns come from different runs.")]
