"""Training-batch augmentation (`dataset.augment`): random crop after padding, horizontal flip.

A batch (B, C*H*W) is augmented as a whole on its device: one draw of B offsets and B flips from
the run's generator, and one gather. So a seed gives the same augmented batches every time, and
no Python runs per sample. Only training batches pass through here; evaluation never does.

crop is torchvision's RandomCrop(H, padding=p) on every image: pad p pixels on each side with
`fill` (the data's black, standardised), take the H x W window at an offset drawn uniformly from
0..2p in each direction. flip is RandomHorizontalFlip(0.5).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F


def augment(x: Tensor, image_shape: tuple[int, int, int], ops: Sequence[str], pad: int, fill: float,
            generator: torch.Generator) -> Tensor:
    """The batch x (B, C*H*W) with `ops` applied per image; random draws from `generator` (on the
    host, like the epoch's data order), in the order crop offsets, then flips."""
    batch, (channels, height, width) = len(x), image_shape
    images = x.view(batch, channels, height, width)
    if "crop" in ops and pad > 0:
        dy, dx = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator).to(x.device)
        padded = F.pad(images, (pad, pad, pad, pad), value=fill)
        rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        every = torch.arange(batch, device=x.device)[:, None, None, None]
        images = padded[every, torch.arange(channels, device=x.device)[None, :, None, None], rows, cols]
    if "flip" in ops:
        flip = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images.reshape(batch, -1)
