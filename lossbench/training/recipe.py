"""What the training loops take from the recipe knobs outside `trainer.*`: the learning-rate
schedule (`scheduler.*`) and the training-batch augmentation (`dataset.augment`). train.py and
the seed stack (batched.py) apply both the same way, from the same functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from lossbench.training.augment import augment
from lossbench.training.schedule import lr_trace


@dataclass(frozen=True)
class Recipe:
    scheduler: Any = None  # the scheduler config; None: a constant lr
    augment: tuple[str, ...] = ()
    crop_pad: int = 4

    @classmethod
    def of(cls, cfg: Any) -> "Recipe":
        return cls(cfg.scheduler, tuple(op.name for op in cfg.dataset.augment), cfg.dataset.crop_pad)

    def lrs(self, lr: float, epochs: int, steps_per_epoch: int) -> Optional[list[float]]:
        """Every step's lr (None: leave the optimizer's lr alone)."""
        return lr_trace(lr, self.scheduler, epochs, steps_per_epoch)

    def fill(self, x_train: Tensor) -> float:
        """What crop pads with: the smallest training value, the data's black (one read per run)."""
        return float(x_train.min()) if "crop" in self.augment else 0.0

    def batch(self, xb: Tensor, image_shape: Optional[tuple[int, int, int]], fill: float,
              generator: torch.Generator) -> Tensor:
        """A training batch as the model sees it: augmented if asked, else as it is."""
        if not self.augment:
            return xb
        return augment(xb, image_shape, self.augment, self.crop_pad, fill, generator)
