"""The conditions a loss is compared under, applied to a loaded dataset in this order: a class
subset (`dataset.classes`), a long-tailed training subsample (`dataset.imbalance_ratio`), label
noise on the training labels (`dataset.label_noise`, `dataset.noise_kind`); then the validation
split is carved from what they leave (lossbench/data/split.py). The test split keeps
every example of the chosen classes and its clean labels. Every draw comes from `dataset.seed`
(one stream per condition), so all runs of a sweep see the same data."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from lossbench.data import DATASETS, Dataset, peek
from lossbench.data import imbalance, noise
from lossbench.data.classes import select_classes
from lossbench.data.split import carve_val
from lossbench.losses import Task

IMBALANCE_STREAM, NOISE_STREAM = 1, 2


def problems(cfg: Any) -> list[str]:
    """What is wrong with the condition knobs of dataset config `cfg`, without reading any data."""
    info, found, shape = DATASETS[cfg.name], [], peek(cfg)
    class_ids = info.class_ids or tuple(range(shape.n_classes))
    if cfg.classes is not None:
        classes = list(cfg.classes)
        if shape.task != Task.single_label:
            found.append(f"dataset.classes selects classes of a single-label dataset; "
                         f"dataset={cfg.name} is {shape.task.value}")
        else:
            unknown = [c for c in classes if c not in class_ids]
            repeated = sorted({c for c in classes if classes.count(c) > 1})
            why = [f"unknown classes {unknown}"] if unknown else []
            why += [f"repeated classes {repeated}"] if repeated else []
            why += ["fewer than 2 classes"] if len(classes) < 2 else []
            if why:
                found.append(f"dataset.classes={classes} is not accepted ({'; '.join(why)}): give 2 "
                             f"or more distinct ids from {list(class_ids)}, e.g. [{class_ids[0]},{class_ids[1]}]")
    if not 0 <= cfg.label_noise < 1:
        found.append(f"dataset.label_noise={cfg.label_noise!r} must be in [0, 1)")
    if cfg.noise_kind.name == "asymmetric" and cfg.label_noise > 0:
        if cfg.name not in noise.ASYMMETRIC_MAPS:
            found.append(f"dataset.noise_kind=asymmetric has no class map for dataset={cfg.name}; "
                         f"maps exist for {', '.join(noise.ASYMMETRIC_MAPS)} (use symmetric)")
        elif not asymmetric_map(cfg):
            found.append(f"dataset.noise_kind=asymmetric flips nothing among dataset.classes="
                         f"{list(cfg.classes)}: its map is {noise.ASYMMETRIC_MAPS[cfg.name]}")
    if not cfg.imbalance_ratio >= 1:
        found.append(f"dataset.imbalance_ratio={cfg.imbalance_ratio!r} must be >= 1 (1: balanced)")
    elif cfg.imbalance_ratio > 1 and shape.task != Task.single_label:
        found.append(f"dataset.imbalance_ratio subsamples classes of a single-label dataset; "
                     f"dataset={cfg.name} is {shape.task.value}")
    return found


def asymmetric_map(cfg: Any) -> dict[int, int]:
    """The dataset's asymmetric noise map in its label indices (after dataset.classes)."""
    mapping = noise.ASYMMETRIC_MAPS[cfg.name]
    if cfg.classes is None:
        return dict(mapping)
    index = {c: i for i, c in enumerate(cfg.classes)}
    return {index[s]: index[t] for s, t in mapping.items() if s in index and t in index}


def apply_conditions(data: Dataset, cfg: Any) -> Dataset:
    info = dict(data.info)
    if cfg.classes is not None:
        data = select_classes(data, list(cfg.classes))
    if data.task == Task.single_label:
        info["class_ids"] = list(cfg.classes or range(data.n_classes))
    labels = data.y_train.numpy()
    if cfg.imbalance_ratio > 1:
        rng = np.random.default_rng([cfg.seed, IMBALANCE_STREAM])
        kept = torch.from_numpy(imbalance.subsample(labels, data.n_classes, cfg.imbalance_ratio, rng))
        data = dataclasses.replace(data, x_train=data.x_train[kept], y_train=data.y_train[kept])
        labels = data.y_train.numpy()
    clean = None
    if cfg.label_noise > 0:
        rng = np.random.default_rng([cfg.seed, NOISE_STREAM])
        if data.task == Task.multi_label:
            noisy = noise.multi_label(labels, cfg.label_noise, rng)
        elif cfg.noise_kind.name == "asymmetric":
            noisy = noise.asymmetric(labels, asymmetric_map(cfg), cfg.label_noise, rng)
        else:
            noisy = noise.symmetric(labels, data.n_classes, cfg.label_noise, rng)
        clean, labels = data.y_train, noisy
    data = dataclasses.replace(data, y_train=torch.from_numpy(labels), y_train_clean=clean)
    # After the conditions: the val split has the training distribution (noisy labels included).
    data = carve_val(data, cfg)
    return dataclasses.replace(data, info={**info, **training_facts(data)})


def training_facts(data: Dataset) -> dict[str, Any]:
    """What summary.json records about the training split a run trains on (after the val split)."""
    labels, facts = data.y_train.numpy(), {}
    clean = None if data.y_train_clean is None else data.y_train_clean.numpy()
    if clean is not None:
        facts["label_noise_realised"] = float((labels != clean).mean())
    if data.task == Task.single_label:
        facts["train_class_counts"] = np.bincount(clean if clean is not None else labels,
                                                  minlength=data.n_classes).tolist()
    else:
        facts["train_positive_rate"] = labels.mean(axis=0, dtype=np.float64).round(6).tolist()
        facts["label_cardinality"] = float(labels.sum(axis=1, dtype=np.float64).mean())
    return facts
