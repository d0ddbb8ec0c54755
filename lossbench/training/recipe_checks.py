"""Checks of the training-recipe knobs (scheduler, Nesterov, gradient clipping, batch norm and
initialisation, augmentation): values their types allow but a run cannot use. Cheap: no data."""

from __future__ import annotations

from typing import Any, Optional


def _scheduler_problems(s: Any, epochs: int) -> list[str]:
    from lossbench.training.schedule import SCHEDULES

    if s.name not in SCHEDULES:
        return [f"scheduler.name={s.name!r} is not a schedule; accepted: {', '.join(sorted(SCHEDULES))}"]
    found = []
    if not 0 <= s.warmup_epochs < max(epochs, 1):
        found.append(f"scheduler.warmup_epochs={s.warmup_epochs} must be in 0..{epochs - 1} "
                     f"(fewer than trainer.epochs={epochs}: the schedule needs epochs after the warm-up)")
    if s.name == "cosine" and not s.eta_min >= 0:
        found.append(f"scheduler.eta_min={s.eta_min!r} must be >= 0: the lr cosine annealing ends at")
    if s.name in ("step", "multistep") and not s.gamma > 0:
        found.append(f"scheduler.gamma={s.gamma!r} must be > 0: the factor the lr is multiplied by")
    if s.name == "step" and s.step_size < 1:
        found.append(f"scheduler.step_size={s.step_size} must be an integer >= 1 (epochs between decays)")
    milestones = list(s.milestones)
    if s.name == "multistep" and (not milestones or any(m < 1 for m in milestones)
                                  or milestones != sorted(set(milestones))):
        found.append(f"scheduler.milestones={milestones} must be increasing epochs >= 1, e.g. "
                     "scheduler.milestones=[30,60]")
    if s.name == "onecycle":
        for key in ("div_factor", "final_div_factor"):
            if not getattr(s, key) > 0:
                found.append(f"scheduler.{key}={getattr(s, key)!r} must be a number > 0")
    return found


def _step_problems(cfg: Any) -> list[str]:
    found = []
    if cfg.optim.nesterov and (cfg.optim.name != "sgd" or not cfg.optim.momentum > 0):
        # torch.optim.SGD raises "Nesterov momentum requires a momentum and zero dampening"
        found.append(f"optim.nesterov=true needs optim=sgd with optim.momentum > 0 (got optim={cfg.optim.name}, "
                     f"optim.momentum={cfg.optim.momentum}), as torch.optim.SGD requires")
    clip = cfg.trainer.grad_clip
    if clip is not None and not clip > 0:
        found.append(f"trainer.grad_clip={clip!r} must be a number > 0 (the largest total gradient norm a "
                     "step applies), or null: no clipping")
    return found


def _model_problems(cfg: Any) -> list[str]:
    if cfg.model.name != "cnn" and cfg.model.init.conv.name != "default":
        return [f"model.init.conv={cfg.model.init.conv.name} needs model=cnn: model={cfg.model.name} "
                "has no conv layers (model.init.linear applies to it)"]
    return []


def _augment_problems(cfg: Any) -> list[str]:
    from lossbench.data import DATASETS

    d, found = cfg.dataset, []
    ops = [op.name for op in d.augment]
    if ops and d.name in DATASETS and not DATASETS[d.name].images:
        images = sorted(name for name, info in DATASETS.items() if info.images)
        found.append(f"dataset.augment={ops} needs images; dataset={d.name} holds feature vectors. Use "
                     f"dataset.augment=[], or one of the image datasets: {', '.join(images)}")
    if len(set(ops)) != len(ops):
        found.append(f"dataset.augment={ops} lists an augmentation twice; accepted: crop, flip, each at most once")
    if d.crop_pad < 0:
        found.append(f"dataset.crop_pad={d.crop_pad} must be an integer >= 0 (pixels padded on each side "
                     "before the random crop)")
    return found


def crop_problems(d: Any, image_shape: Optional[tuple[int, ...]]) -> list[str]:
    """A pad as wide as the image lets a random crop hold padding alone, none of the image."""
    if image_shape is None or "crop" not in [op.name for op in d.augment]:
        return []
    side = min(image_shape[1:])
    if d.crop_pad < side:
        return []
    return [f"dataset.crop_pad={d.crop_pad} must be smaller than the images' side ({side}): a crop "
            f"from a pad that wide can hold no pixel of the image"]


def recipe_problems(cfg: Any) -> list[str]:
    return (_scheduler_problems(cfg.scheduler, cfg.trainer.epochs) + _step_problems(cfg)
            + _model_problems(cfg) + _augment_problems(cfg))
