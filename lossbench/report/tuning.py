"""What a tuned study did per loss, from DIR/tuning.parquet (lossbench.tuning): the budget, the
search space, the setting chosen and the validation value it was chosen on."""

from __future__ import annotations

import pandas as pd

from lossbench.report.groups import loss_sort_key


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
