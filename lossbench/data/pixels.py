"""Images held as uint8 pixels: a quarter of float32's memory. Each batch becomes float on its
device (`Dataset.inputs`): pixels / 255, standardised per channel by the training split's mean and
standard deviation, computed here once at load (before the conditions, so every run of a dataset
standardises alike)."""

from __future__ import annotations

import torch

from lossbench.errors import DataError


def pixel_stats(x_train: torch.Tensor, channels: int, origin: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) of uint8 pixels (N, C*H*W) scaled to [0, 1], each shaped (C, 1) to
    broadcast over a batch viewed as (N, C, H*W). One channel's float copy at a time."""
    per_channel = x_train.view(len(x_train), channels, -1)
    means, stds = [], []
    for c in range(channels):
        values = per_channel[:, c].float().div_(255.0)
        means.append(values.mean())
        stds.append(values.std())
    mean, std = torch.stack(means)[:, None], torch.stack(stds)[:, None]
    flat = (std == 0).nonzero().flatten().tolist()
    if flat:  # standardising would divide by zero and every run would "diverge"
        channel = f" of channel {flat[0]}" if channels > 1 else ""
        raise DataError(f"{origin}: every training pixel{channel} has the same value "
                        f"({float(mean[flat[0]]) * 255:g}); there is nothing to learn from")
    return mean, std

