"""The generated Findings paragraph of a Stability group: where bce and bce_logits part ways.

Input: the group's summary rows (every status) and the collected steps.parquet rows. A *stress
setting* is a combination of the stress columns (cfg.trainer.precision, cfg.model.logit_scale,
cfg.optim.lr) that vary in the group. In a setting where both losses ran, they *part ways* when

  - the share of runs that diverged differs, or
  - the share of runs that logged a non-finite loss or gradient (or skipped a step) differs, or
  - their mean final metric (acc / map) differs by at least MARGIN and a paired t-test by seed
    gives p < ALPHA (needs >= 2 seeds completed by both).

A gap of at least MARGIN that no paired test backs (one seed, or p >= ALPHA) is reported on its own
and not counted. Diverged runs have no final metric: means are over completed runs and divergence
is counted separately; failed / interrupted / running runs are left out (no training outcome).

Every number in the text comes from the frames; settings that behave alike are merged into boxes
(e.g. "precision 16 and 32, logit scale 1") so the paragraph stays short. Output is deterministic.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lossbench.report.groups import LOWER_IS_BETTER, format_value, loss_sort_key, value_sort_key
from lossbench.report.stats import ALPHA, paired_test

STRESS = {"cfg.trainer.precision": "precision", "cfg.model.logit_scale": "logit scale",
          "cfg.optim.lr": "lr"}
PAIR = ("bce", "bce_logits")
MARGIN = 0.02  # smallest difference in mean final acc / map that counts (metric scale 0..1)
ENDED = ("completed", "diverged")
FIRST_BAD = re.compile(r"non-finite (loss|gradient) at step (\d+)")


def f3(x: float) -> str:
    return f"{x:.3f}"


def fp(p: float) -> str:
    return "<0.0001" if p < 0.0001 else f"{p:.4f}"


def runs_word(n: int) -> str:
    return "run" if n == 1 else "runs"


def join_words(items: list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ---- per run ----

def stress_dims(runs: pd.DataFrame) -> list[str]:
    """The stress columns that vary in these runs; all present ones if none varies."""
    present = [c for c in STRESS if c in runs.columns]
    varying = [c for c in present if runs[c].map(format_value).nunique() > 1]
    return varying or present


def per_run(runs: pd.DataFrame, steps: pd.DataFrame | None, metric: str,
            dims: list[str]) -> pd.DataFrame:
    """One row per run: setting key, status, final metric, non-finite events, saturation."""
    column = f"test_{metric}"
    out = pd.DataFrame({
        "run": runs["run"].astype("str").to_numpy(),
        "loss": runs["loss"].fillna("unknown").astype("str").to_numpy(),
        "seed": runs["seed"].to_numpy() if "seed" in runs else np.nan,
        "status": runs["status"].fillna("unknown").astype("str").to_numpy(),
        "error": runs["error"].to_numpy() if "error" in runs else None,
    })
    rows = runs[dims].itertuples(index=False) if dims else [()] * len(runs)
    out["key"] = [tuple(format_value(v) for v in row) for row in rows]
    values = pd.to_numeric(runs[column], errors="coerce").to_numpy() if column in runs else np.nan
    out["value"] = np.where(out["status"] == "completed", values, np.nan)
    skipped = pd.to_numeric(runs["skipped_steps"], errors="coerce").fillna(0).to_numpy() \
        if "skipped_steps" in runs else np.zeros(len(runs))
    out["nf_loss"], out["nf_grad"], out["saturation"] = 0, 0, np.nan
    out["first_step"], out["first_kind"], out["first_exact"] = np.nan, "", False
    out["skipped"] = skipped
    if steps is not None and len(steps):
        mine = steps[steps["run"].isin(out["run"])].sort_values(["run", "step"], kind="stable")
        last = mine.groupby("run").tail(1).set_index("run")
        out["nf_loss"] = out["run"].map(last["nonfinite_loss"]).fillna(0).astype(int).to_numpy()
        out["nf_grad"] = out["run"].map(last["nonfinite_grad"]).fillna(0).astype(int).to_numpy()
        if "skipped_steps" in last:
            out["skipped"] = np.maximum(out["skipped"],
                                        out["run"].map(last["skipped_steps"]).fillna(0).to_numpy())
        bad = mine[(mine["nonfinite_loss"] > 0) | (mine["nonfinite_grad"] > 0)]
        first = bad.groupby("run").head(1).set_index("run")
        for i, run in enumerate(out["run"]):
            if run in first.index:
                row = first.loc[run]
                kinds = [k for k, c in (("loss", "nonfinite_loss"), ("gradient", "nonfinite_grad"))
                         if row[c] > 0]
                out.loc[i, ["first_step", "first_kind"]] = [int(row["step"]), " and ".join(kinds)]
        # sigmoid saturation over steps whose logits were finite (NaN logits count as unsaturated)
        finite = mine[np.isfinite(mine["saturated_frac"])]
        if "max_abs_logit" in finite:
            finite = finite[np.isfinite(finite["max_abs_logit"])]
        out["saturation"] = out["run"].map(finite.groupby("run")["saturated_frac"].mean()).to_numpy()
    for i, error in enumerate(out["error"]):  # the trainer's own message is exact
        match = FIRST_BAD.search(error) if isinstance(error, str) else None
        if match:
            out.loc[i, ["first_step", "first_kind", "first_exact"]] = [
                int(match.group(2)), match.group(1), True]
    out["diverged"] = out["status"] == "diverged"
    out["nonfinite"] = (out["diverged"] | (out["nf_loss"] > 0) | (out["nf_grad"] > 0)
                        | (out["skipped"] > 0))
    return out


# ---- per (loss, setting) ----

@dataclass
class Cell:
    """The ended runs (completed or diverged) of one loss in one or more settings."""
    rows: pd.DataFrame
    n: int = 0
    diverged: int = 0
    nonfinite: int = 0
    values: pd.Series = field(default_factory=pd.Series)  # final metric per seed, completed runs

    def __post_init__(self):
        self.n = len(self.rows)
        self.diverged = int(self.rows["diverged"].sum())
        self.nonfinite = int(self.rows["nonfinite"].sum())
        done = self.rows[self.rows["value"].notna()]
        self.values = done.groupby("seed")["value"].mean() if len(done) else pd.Series(dtype=float)

    @property
    def div_share(self) -> float:
        return self.diverged / self.n if self.n else math.nan

    @property
    def nf_share(self) -> float:
        return self.nonfinite / self.n if self.n else math.nan

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if len(self.values) else math.nan


def cells(table: pd.DataFrame) -> dict[tuple[str, tuple], Cell]:
    ended = table[table["status"].isin(ENDED)]
    return {(loss, key): Cell(part) for (loss, key), part in ended.groupby(["loss", "key"], sort=False)}


# ---- boxes: settings that behave alike, merged into products of value sets ----

def boxes(keys: list[tuple]) -> list[tuple[tuple[str, ...], ...]]:
    """Cover exactly `keys` with boxes (a value set per dimension), merging greedily two boxes
    that differ in one dimension only. Deterministic: inputs and outputs are sorted."""
    def order(values):
        return tuple(sorted(values, key=value_sort_key))

    def box_key(box):
        return tuple(tuple(value_sort_key(v) for v in values) for values in box)

    current = sorted({tuple((v,) for v in key) for key in keys}, key=box_key)
    merged = True
    while merged:
        merged = False
        for i in range(len(current)):
            for j in range(i + 1, len(current)):
                a, b = current[i], current[j]
                differ = [d for d in range(len(a)) if set(a[d]) != set(b[d])]
                if len(differ) == 1:
                    d = differ[0]
                    new = a[:d] + (order(set(a[d]) | set(b[d])),) + a[d + 1:]
                    current = sorted([c for k, c in enumerate(current) if k not in (i, j)] + [new],
                                     key=box_key)
                    merged = True
                    break
            if merged:
                break
    return current


def members(box) -> list[tuple]:
    if not box:
        return [()]
    out = [()]
    for values in box:
        out = [k + (v,) for k in out for v in values]
    return out


def describe_box(box, dims: list[str]) -> str:
    if not dims:
        return "the default setting"
    return ", ".join(f"{STRESS[d]} {join_words(list(values))}" for d, values in zip(dims, box))


def describe_keys(keys: list[tuple], dims: list[str]) -> str:
    return "; ".join(describe_box(b, dims) for b in boxes(keys))


# ---- sentences ----

def value_text(cellset: list[Cell], metric: str) -> str:
    """'acc 0.912 ± 0.004 (3 runs)' for one setting, 'acc 0.880 to 0.912' over several."""
    means = [c.mean for c in cellset if len(c.values)]
    if not means:
        return f"no completed run, so no {metric}"
    if len(cellset) == 1:
        values = cellset[0].values
        if len(values) >= 2:
            spread = f3(values.std(ddof=1))
            return f"{metric} {f3(values.mean())} ± {spread} over {len(values)} seeds"
        return f"{metric} {f3(values.iloc[0])} on 1 seed"
    low, high = min(means), max(means)
    if len(means) < len(cellset):
        extra = f" where any completed ({len(means)} of {len(cellset)} settings)"
    else:
        extra = " (setting means)"
    if low == high and len(means) == len(cellset):
        return f"{metric} {f3(low)} in each setting"
    return (f"{metric} {f3(low)}" if low == high else f"{metric} {f3(low)} to {f3(high)}") + extra


def events_text(rows: pd.DataFrame) -> str:
    """'1 non-finite gradient, first at step 1' from the runs' counts and first events."""
    parts = []
    for count, word, words in ((int(rows["nf_loss"].sum()), "loss", "losses"),
                               (int(rows["nf_grad"].sum()), "gradient", "gradients")):
        if count:
            parts.append(f"{count} non-finite {word if count == 1 else words}")
    skipped = int(rows["skipped"].sum())
    if skipped:
        parts.append(f"{skipped} skipped {'step' if skipped == 1 else 'steps'}")
    firsts = rows[rows["first_step"].notna()]
    if len(firsts):
        kinds = sorted({k for text in firsts["first_kind"] for k in text.split(" and ") if k})
        low, high = int(firsts["first_step"].min()), int(firsts["first_step"].max())
        steps = f"step {low}" if low == high else f"steps {low} to {high}"
        where = "at" if firsts["first_exact"].all() else "logged by"
        what = "first" if parts else f"first non-finite {' and '.join(kinds) or 'value'}"
        parts.append(f"{what} {where} {steps}")
    return ", ".join(parts)


def loss_clause(loss: str, cellset: list[Cell], metric: str, show_value: bool = True) -> str:
    rows = pd.concat([c.rows for c in cellset])
    n, d = len(rows), int(rows["diverged"].sum())
    nf = int(rows["nonfinite"].sum())
    text = f"{loss} diverged in {d}/{n} {runs_word(n)}"
    if nf > d:
        text += f", non-finite values in {nf}/{n}"
    events = events_text(rows)
    if events:
        text += f" with {events}"
    if show_value and d < n:
        text += ", " + value_text(cellset, metric)
    return text


def saturation_text(pair_cells: dict[str, list[Cell]]) -> str:
    """'mean saturated fraction bce 0.343, bce_logits 0.017' (sigmoid outputs at exactly 0 or 1)."""
    parts, missing = [], []
    for loss, cellset in pair_cells.items():
        values = pd.concat([c.rows for c in cellset])["saturation"].dropna()
        if len(values):
            parts.append(f"{loss} {f3(values.mean())}")
        else:
            missing.append(loss)
    if not parts:
        return ""
    text = "mean saturated fraction " + ", ".join(parts)
    if missing:
        text += f", {join_words(missing)} unmeasured: no logged step with finite logits"
    return text


@dataclass
class Comparison:
    key: tuple
    kind: str  # diverged | nonfinite | metric | gap | both_diverged | same
    lead: str = ""  # the loss that diverged more, or had the better metric
    diff: float = math.nan  # mean bce_logits - mean bce
    p: float | None = None
    pairs: int = 0


def compare(key, b: Cell, l: Cell, metric: str) -> Comparison:
    bce, logits = PAIR
    if b.div_share != l.div_share:
        return Comparison(key, "diverged", bce if b.div_share > l.div_share else logits)
    if b.nf_share != l.nf_share:
        return Comparison(key, "nonfinite", bce if b.nf_share > l.nf_share else logits)
    if not len(b.values) or not len(l.values):
        return Comparison(key, "both_diverged" if b.diverged == b.n else "same")
    diff = l.mean - b.mean
    seeds = sorted(set(b.values.index) & set(l.values.index))
    test = paired_test(l.values.reindex(seeds).to_numpy(), b.values.reindex(seeds).to_numpy())
    higher = logits if diff > 0 else bce
    better = higher if metric not in LOWER_IS_BETTER else (bce if higher == logits else logits)
    if abs(diff) >= MARGIN:
        kind = "metric" if test.t_p is not None and test.t_p < ALPHA else "gap"
        return Comparison(key, kind, better, diff, test.t_p, test.n)
    return Comparison(key, "same", "", diff, test.t_p, test.n)


def rule(metric: str, dims: list[str], saturation: bool) -> str:
    names = join_words([STRESS[d] for d in dims]) or "none varied"
    text = (f"Rule: bce and bce_logits part ways in a stress setting (a combination of {names}) "
            "when the share of runs that diverged, or the share of runs that logged a non-finite "
            "loss or gradient, differs between them, or when their mean final "
            f"{metric} differs by at least {MARGIN:g} and a paired t-test by seed gives "
            f"p < {ALPHA:g} (needs at least 2 seeds completed by both). A diverged run has no final "
            f"{metric}: means (± SD over seeds) are over completed runs only and divergence is "
            "counted on its own; failed, interrupted or unfinished runs are left out.")
    if saturation:
        text += (" Saturated fraction: the share of sigmoid outputs at exactly 0 or 1 in the "
                 "working precision, mean over logged steps with finite logits.")
    return text


def pair_sentences(table: pd.DataFrame, by_cell: dict, dims: list[str], metric: str) -> list[str]:
    bce, logits = PAIR
    keys_b = {k for (loss, k) in by_cell if loss == bce}
    keys_l = {k for (loss, k) in by_cell if loss == logits}
    both = sorted(keys_b & keys_l, key=lambda k: tuple(value_sort_key(v) for v in k))
    if not both:
        present = [loss for loss in PAIR if loss in set(table["loss"])]
        if present:
            missing = PAIR[1 - PAIR.index(present[0])]
            return [f"Only {present[0]} has runs that ended here (no {missing} run in any "
                    "setting), so bce and bce_logits are not compared."]
        return []
    comparisons = [compare(k, by_cell[(bce, k)], by_cell[(logits, k)], metric) for k in both]
    apart = [c for c in comparisons if c.kind in ("diverged", "nonfinite", "metric")]
    out = [rule(metric, dims, table["saturation"].notna().any())]
    m = len(comparisons)
    if apart:
        out.append(f"They part ways in {len(apart)} of {m} {'setting' if m == 1 else 'settings'} "
                   "where both ran.")
    else:
        out.append(f"They part ways in none of the {m} {'setting' if m == 1 else 'settings'} "
                   "where both ran.")

    def cellsets(keys):
        return {loss: [by_cell[(loss, k)] for k in keys] for loss in PAIR}

    def grouped(kind):
        """lead loss -> list of boxes (each with its keys), for the comparisons of one kind."""
        leads = sorted({c.lead for c in comparisons if c.kind == kind}, key=loss_sort_key)
        for lead in leads:
            keys = [c.key for c in comparisons if c.kind == kind and c.lead == lead]
            yield lead, [(box, members(box)) for box in boxes(keys)]

    for kind in ("diverged", "nonfinite"):
        for lead, bxs in grouped(kind):
            other = PAIR[1 - PAIR.index(lead)]
            verb = ("diverged in a larger share of runs than" if kind == "diverged" else
                    "logged non-finite values in a larger share of runs (divergence equal) than")
            items = []
            for box, keys in bxs:
                sets = cellsets(keys)
                detail = "; ".join(loss_clause(loss, sets[loss], metric) for loss in (lead, other))
                sat = saturation_text(sets)
                items.append(f"{describe_box(box, dims)} ({detail}{'; ' + sat if sat else ''})")
            out.append(f"{lead} {verb} {other} at " + "; at ".join(items) + ".")

    by_key = {c.key: c for c in comparisons}
    for kind in ("metric", "gap"):
        for lead, bxs in grouped(kind):
            other = PAIR[1 - PAIR.index(lead)]
            items = []
            for box, keys in bxs:
                sets = cellsets(keys)
                values = "; ".join(f"{loss} {value_text(sets[loss], metric)}"
                                   for loss in (lead, other))
                tests = [by_key[k] for k in keys]
                if kind == "metric":
                    worst = max(t.p for t in tests)
                    test = f"paired t-test p {'=' if len(tests) == 1 else '<='} {fp(worst)}"
                else:
                    pairs = sorted({t.pairs for t in tests})
                    untested = [t for t in tests if t.p is None]
                    test = (f"{join_words([str(p) for p in pairs])} paired "
                            f"{'seed' if pairs == [1] else 'seeds'}")
                    if len(untested) < len(tests):
                        ps = [t.p for t in tests if t.p is not None]
                        test += f", paired t-test p {'=' if len(tests) == 1 else '>='} {fp(min(ps))}"
                    else:
                        test += ", no t-test possible"
                sat = saturation_text(sets)
                sat = f"; {sat}" if sat else ""
                items.append(f"{describe_box(box, dims)} ({values}; {test}{sat})")
            if kind == "metric":
                out.append(f"{lead} reached a better mean final {metric} than {other} at "
                           + "; at ".join(items) + ".")
            else:
                out.append(f"Not counted as parting ways (a gap of at least {MARGIN:g} in mean "
                           f"{metric} that no paired test at p < {ALPHA:g} backs): {lead} ahead of "
                           f"{other} at " + "; at ".join(items) + ".")

    same = [c for c in comparisons if c.kind == "same"]
    if same:
        keys = [c.key for c in same]
        sets = cellsets(keys)
        diffs = [abs(c.diff) for c in same if not math.isnan(c.diff)]
        d = {loss: sum(c.diverged for c in sets[loss]) for loss in PAIR}
        n = {loss: sum(c.n for c in sets[loss]) for loss in PAIR}
        nf = {loss: sum(c.nonfinite for c in sets[loss]) for loss in PAIR}
        if not any(nf.values()):
            events = "no run of either diverged or logged a non-finite value"
        else:
            events = "equal shares of diverged runs (" + ", ".join(
                f"{loss} {d[loss]}/{n[loss]}" for loss in PAIR) + ") and of runs with non-finite values"
        gap = (f"absolute difference in mean {metric} < {MARGIN:g} (at most {max(diffs):.4f})"
               if diffs else f"no {metric} to compare")
        out.append(f"They do not part ways at {describe_keys(keys, dims)}: {events}; {gap}.")
    both_div = [c.key for c in comparisons if c.kind == "both_diverged"]
    if both_div:
        sets = cellsets(both_div)
        out.append(f"Both diverged in every run at {describe_keys(both_div, dims)} ("
                   + "; ".join(loss_clause(loss, sets[loss], metric, False) for loss in PAIR)
                   + "): no difference in training and no final " + metric + " to compare.")
    for loss, keys in ((bce, keys_b - keys_l), (logits, keys_l - keys_b)):
        if keys:
            out.append(f"Only {loss} ran (not compared) at {describe_keys(sorted(keys), dims)}.")
    return out


def worst_sentence(by_cell: dict, dims: list[str], metric: str) -> list[str]:
    """Per loss, the setting(s) with the largest diverged share, then the worst mean metric."""
    keys = {k for (_, k) in by_cell}
    if len(keys) < 2:
        return []
    sign = 1 if metric in LOWER_IS_BETTER else -1
    items = []
    for loss in sorted({loss for (loss, _) in by_cell}, key=loss_sort_key):
        mine = {k: c for (l, k), c in by_cell.items() if l == loss}
        if len(mine) < 2:
            continue

        def badness(c: Cell):
            value = math.inf if math.isnan(c.mean) else sign * c.mean
            return (c.div_share, value, c.nf_share)

        worst = max(badness(c) for c in mine.values())
        tied = sorted((k for k, c in mine.items() if badness(c) == worst),
                      key=lambda k: tuple(value_sort_key(v) for v in k))
        cellset = [mine[k] for k in tied]
        if len(tied) == len(mine):
            first = cellset[0]
            same = ("diverged in every run" if first.diverged == first.n
                    else value_text(cellset, metric))
            items.append(f"{loss} none: all {len(mine)} of its settings tie ({same})")
            continue
        d, n = sum(c.diverged for c in cellset), sum(c.n for c in cellset)
        facts = f"diverged in {d}/{n} {runs_word(n)}" if d else "none diverged"
        if d < n:
            facts += ", " + value_text(cellset, metric)
        items.append(f"{loss} at {describe_keys(tied, dims)} ({facts})")
    if not items:
        return []
    return ["Worst setting per loss (largest share of diverged runs, then lowest mean final "
            f"{metric}): " + "; ".join(items) + "."]


def softmax_sentence(table: pd.DataFrame, dims: list[str]) -> list[str]:
    """Whether ce / nll ever diverged or logged a non-finite value."""
    items = []
    for loss in ("ce", "nll"):
        rows = table[(table["loss"] == loss) & table["status"].isin(ENDED)]
        if rows.empty:
            continue
        n, d, nf = len(rows), int(rows["diverged"].sum()), int(rows["nonfinite"].sum())
        settings = len(set(rows["key"]))
        where = f"{n} {runs_word(n)} over {settings} {'setting' if settings == 1 else 'settings'}"
        if not nf:
            items.append(f"{loss} never diverged and logged no non-finite value ({where})")
            continue
        text = f"{loss} diverged in {d} of {where}" if d else f"{loss} never diverged ({where})"
        if d:
            where_div = sorted(set(rows.loc[rows["diverged"], "key"]))
            text += " (at " + describe_keys(where_div, dims) + ")"
        if nf > d:
            text += f"; {nf - d} more {runs_word(nf - d)} logged non-finite values without diverging"
        items.append(text)
    return ["Softmax losses: " + "; ".join(items) + "."] if items else []


def left_out_sentence(table: pd.DataFrame) -> list[str]:
    rest = table[~table["status"].isin(ENDED)]
    if rest.empty:
        return []
    counts = rest.groupby(["loss", "status"]).size()
    order = sorted(counts.index, key=lambda ls: (loss_sort_key(ls[0]), ls[1]))
    return ["Left out (no training outcome, see Excluded runs): "
            + "; ".join(f"{loss} {counts[(loss, s)]} {s}" for loss, s in order) + "."]


def stability_findings(runs: pd.DataFrame, steps: pd.DataFrame | None, metric: str) -> list[str]:
    """The Findings sentences of one Stability group (runs: its summary rows, every status)."""
    if runs.empty:
        return []
    dims = stress_dims(runs)
    table = per_run(runs.reset_index(drop=True), steps, metric, dims)
    by_cell = cells(table)
    return (pair_sentences(table, by_cell, dims, metric) + worst_sentence(by_cell, dims, metric)
            + softmax_sentence(table, dims) + left_out_sentence(table))


def findings_paragraph(runs: pd.DataFrame, steps: pd.DataFrame | None, metric: str) -> str:
    sentences = stability_findings(runs, steps, metric)
    return ("**Findings** (generated from the runs below). " + " ".join(sentences)) if sentences else ""
