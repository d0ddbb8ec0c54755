"""A long-tailed training set: the exponential profile of Cui et al. 2019, "Class-Balanced Loss
Based on Effective Number of Samples": class c keeps n_c = int(n_max * rho^(-c / (C - 1))) of its
examples (at least one), so class 0 keeps n_max, the largest class count, and class C - 1 keeps
n_max / rho. Classes are in the dataset's label order (or dataset.classes' order)."""

from __future__ import annotations

import numpy as np


def profile(n_max: int, n_classes: int, rho: float) -> list[int]:
    return [max(1, int(n_max * rho ** (-c / (n_classes - 1)))) for c in range(n_classes)]


def subsample(labels: np.ndarray, n_classes: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of the examples kept. A class with fewer examples than its target keeps all."""
    counts = np.bincount(labels, minlength=n_classes)
    kept = [
        rng.choice(np.flatnonzero(labels == c), min(target, counts[c]), replace=False)
        for c, target in enumerate(profile(int(counts.max()), n_classes, rho))
    ]
    return np.sort(np.concatenate(kept))
