"""The models: an MLP from flat features, and a LeNet-style CNN for images, to one logit per class."""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor, nn

from lossbench.errors import ConfigError


class MLP(nn.Module):
    def __init__(self, n_in: int, hidden: list[int], n_out: int, dropout: float, logit_scale: float):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(n_in, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            n_in = width
        layers.append(nn.Linear(n_in, n_out))
        self.net = nn.Sequential(*layers)
        # A fixed multiplier, not a parameter: it drives logits into saturation on purpose.
        self.logit_scale = logit_scale

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(x)
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits


class CNN(nn.Module):
    """LeNet-style: two blocks of conv (same padding) + ReLU + 2x2 max-pool, then the MLP head.
    Any image size: a 28x28 input leaves 7x7 maps, 56x56 leaves 14x14. The data stays flat (N,
    C*H*W) in memory; the forward pass unflattens it."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int], kernel_size: int,
                 hidden: list[int], n_out: int, dropout: float, logit_scale: float):
        super().__init__()
        self.image_shape = tuple(image_shape)
        in_channels, height, width = self.image_shape
        if min(height, width) < 2 ** len(channels):  # a 2x2 max-pool of a 1-pixel map is empty
            side = 2 ** len(channels)
            raise ConfigError(
                f"model.channels={list(channels)!r} has {len(channels)} conv + pool blocks, each halving "
                f"the image: they need images of at least {side}x{side}, and these are {height}x{width}. "
                f"Give at most {min(height, width).bit_length() - 1} channel widths")
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks += [nn.Conv2d(in_channels, out_channels, kernel_size, padding="same"),
                       nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, height, width = out_channels, height // 2, width // 2
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.head = MLP(in_channels * height * width, hidden, n_out, dropout, logit_scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.view(-1, *self.image_shape)))


def build_mlp(cfg: Any, n_in: int, n_out: int, image_shape: Optional[tuple[int, int, int]]) -> nn.Module:
    return MLP(n_in, list(cfg.hidden), n_out, cfg.dropout, cfg.logit_scale)


def build_cnn(cfg: Any, n_in: int, n_out: int, image_shape: Optional[tuple[int, int, int]]) -> nn.Module:
    # config.validate refuses model=cnn on a dataset without images before anything loads
    return CNN(image_shape, list(cfg.channels), cfg.kernel_size, list(cfg.hidden), n_out, cfg.dropout,
               cfg.logit_scale)


MODELS = {"mlp": build_mlp, "cnn": build_cnn}


def build_model(cfg: Any, n_in: int, n_out: int,
                image_shape: Optional[tuple[int, int, int]] = None) -> nn.Module:
    return MODELS[cfg.name](cfg, n_in, n_out, image_shape)
