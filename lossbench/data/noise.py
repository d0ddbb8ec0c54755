"""Label noise on training labels, generated the way the Active Passive Loss benchmark does (Ma et
al. 2020, github.com/HanxunH/Active-Passive-Losses, `dataset.py`), so noise rates mean what they
mean in that literature. The test labels are never touched.

- symmetric: in each class c, exactly round(eta * n_c) labels (rounded half up, drawn without
  replacement) move to a class drawn uniformly from the C - 1 *other* classes. (APL draws
  int(eta * N / C) per class, the same count on a balanced set; counting per class keeps the rate
  at eta on an imbalanced one.)
- asymmetric: the class maps of Patrini et al. 2017, "Making deep neural networks robust to label
  noise: a loss correction approach": each label of a mapped class flips to its target with
  probability eta (APL's transition matrix with P[s, s] = 1 - eta, P[s, t] = eta). Classes outside
  the map keep their labels, so the realised rate over the whole set is below eta.
- multi-label: each label bit (sample x class) flips with probability eta.
"""

from __future__ import annotations

import numpy as np

# Original class ids: source -> target.
ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    # Patrini et al. 2017 (and APL): 7 -> 1, 2 -> 7, 5 <-> 6, 3 -> 8
    "mnist": {7: 1, 2: 7, 5: 6, 6: 5, 3: 8},
    # lossbench's map of look-alike classes (no standard one exists): T-shirt/top -> Shirt,
    # Pullover -> Coat, Sandal <-> Sneaker, Ankle boot -> Sneaker
    "fashion_mnist": {0: 6, 2: 4, 5: 7, 7: 5, 9: 7},
}


def symmetric(labels: np.ndarray, n_classes: int, eta: float, rng: np.random.Generator) -> np.ndarray:
    noisy = labels.copy()
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        picked = rng.choice(members, int(eta * len(members) + 0.5), replace=False)
        # c + 1 .. c + C - 1 modulo C: every other class, equally likely
        noisy[picked] = (c + rng.integers(1, n_classes, size=len(picked))) % n_classes
    return noisy


def asymmetric(labels: np.ndarray, mapping: dict[int, int], eta: float, rng: np.random.Generator) -> np.ndarray:
    """mapping in the labels' own class indices; 5 <-> 6 swaps, since every test reads the clean labels."""
    flip = rng.random(len(labels)) < eta
    noisy = labels.copy()
    for source, target in mapping.items():
        noisy[(labels == source) & flip] = target
    return noisy


def multi_label(labels: np.ndarray, eta: float, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(labels.shape) < eta
    return np.where(flip, 1 - labels, labels).astype(labels.dtype)
