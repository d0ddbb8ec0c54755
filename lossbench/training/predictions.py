"""Per-example test predictions, the table per-example statistics need (McNemar's test on paired
correctness, a bootstrap over test examples): one row per test example at the last epoch (view
`last`) and at the val-selected epoch (view `selected`, only with a val split).

Columns: `view`, `epoch`, `example` (index in the test split), `correct` (multi-label: every label
right), single-label `label` and `predicted`, then `p_0..p_{K-1}`: the probabilities in float16
(3 significant digits; the file stays small: about 50 kB a run on the MNIST sample).

Columns as numpy arrays, not a DataFrame: a run writes them with pyarrow and never imports pandas.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from lossbench.training.selection import SelectionSoFar


Columns = dict[str, np.ndarray]


def per_example(probs: np.ndarray, labels: np.ndarray, threshold: float) -> Columns:
    """probs (N, K) as the metrics see them; labels (N,) class indices or (N, K) multi-hot.
    Predicted as the metrics predict: argmax, or probability >= threshold per label."""
    columns: dict[str, np.ndarray] = {"example": np.arange(len(probs))}
    if labels.ndim == 1:
        predicted = probs.argmax(axis=1)
        columns.update(correct=predicted == labels, label=labels.astype(np.int64), predicted=predicted)
    else:
        columns["correct"] = ((probs >= threshold) == (labels == 1)).all(axis=1)
    columns.update({f"p_{k}": probs[:, k].astype(np.float16) for k in range(probs.shape[1])})
    return columns


def views(epoch: int, last: Columns, selection: Optional[SelectionSoFar]) -> Columns:
    """This epoch's predictions as view `last`, and those the selection kept as view `selected`."""
    parts = [("last", epoch, last)]
    if selection is not None and selection.kept is not None:
        parts.append(("selected", selection.selected_epoch, selection.kept))
    sizes = [len(columns["example"]) for _, _, columns in parts]
    return {"view": np.repeat([view for view, _, _ in parts], sizes),
            "epoch": np.repeat(np.array([epoch for _, epoch, _ in parts], dtype=np.int64), sizes),
            **{key: np.concatenate([columns[key] for _, _, columns in parts]) for key in last}}
