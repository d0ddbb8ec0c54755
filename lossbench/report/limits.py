"""The main page's limitations box: what the verdicts do not cover, read from the runs' configs
(the model, the data and its size, the split, the precision and device, the training recipe),
so it says the same for the same tables and names no study it was not given.
"""

from __future__ import annotations

import pandas as pd

from lossbench.report.setup_section import caveats, data_text, listed, split_follows_seed, values
from lossbench.report.studies import tuned_runs


def models(runs: pd.DataFrame) -> str:
    names = runs.get("cfg.model.name", pd.Series("unknown", index=runs.index)).astype(str)
    hidden = runs.get("cfg.model.hidden", pd.Series("", index=runs.index)).astype(str)
    return ", ".join(sorted({f"{m} {h}".strip() for m, h in zip(names, hidden)}))


def limitations(completed: pd.DataFrame, everything: pd.DataFrame) -> list[str]:
    """One line per limit of the verdicts on the `completed` compared runs (`everything` adds
    the stress runs, whose precision and device caveats apply to the Stability appendix)."""
    runs = completed[completed["dataset"].notna()] if "dataset" in completed else completed
    if runs.empty:
        return []
    shown = models(runs)
    out = [f"Model: {shown}. Every verdict is about {'this model' if ',' not in shown else 'these models'}"
           " trained this way; another architecture may rank the losses differently."]
    if {"dataset", "data_source"} <= set(runs):
        out.append(f"Data: {data_text(runs.assign(data_source=runs['data_source'].fillna('unknown')))}."
                   " Each CI is as wide as this test size and these seeds allow.")
    seeds = runs.groupby("loss")["seed"].nunique() if "seed" in runs else pd.Series(dtype=int)
    if len(seeds):
        low, high = int(seeds.min()), int(seeds.max())
        span = f"{low}" if low == high else f"{low} to {high}"
        out.append(f"Seeds: {span} per loss and group; the seed (a training run) is the unit of "
                   "replication.")
    out.append("Split: each seed trains and is tested on its own data split "
               "(dataset.split_seed = seed), so an interval over seeds covers the split."
               if split_follows_seed(runs) else
               "Split: every seed uses the same data split, so no interval covers the choice of "
               "split (set dataset.split_seed=${seed} to draw one per seed).")
    tuned = tuned_runs(runs)
    recipe = (f"optimiser {listed(runs, 'cfg.optim.name')}, {listed(runs, 'cfg.trainer.epochs')} "
              "epochs")
    lrs = listed(runs[~tuned], "cfg.optim.lr", "")
    shared = f"; the losses share one learning rate ({lrs}) unless tuned per loss" if lrs else ""
    out.append(f"Not a replication: {recipe}{shared}. These runs reproduce no published table "
               "and test no published claim on its own data, model and budget.")
    out.extend(caveats(everything))
    if (values(everything, "device") == ["cpu"]
            and set(values(everything, "cfg.trainer.precision")) <= {"32"}):
        out.append("Device: CPU, float32 throughout: no autocast result here says anything "
                   "about reduced precision on a GPU.")
    return out
