"""The models: an MLP from flat features, and a LeNet-style CNN for images, to one logit per class."""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor, nn

from lossbench.errors import ConfigError
# model.init.conv / model.init.linear: the weight initialisers (biases keep torch's default).
# kaiming_uniform as the Active Passive Loss code calls it (fan_in, ReLU gain); xavier_uniform gain 1.
INITS = {
    "default": None,
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"),
    "xavier_uniform": nn.init.xavier_uniform_,
}


class MLP(nn.Module):
    def __init__(self, n_in: int, hidden: list[int], n_out: int, dropout: float, logit_scale: float,
                 batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(n_in, width), *([nn.BatchNorm1d(width)] if batch_norm else []), nn.ReLU()]
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
    C*H*W) in memory; the forward pass unflattens it. With batch_norm, a BatchNorm follows every
    conv and hidden linear layer, before its ReLU (the Active Passive Loss "ToyModel")."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int], kernel_size: int,
                 hidden: list[int], n_out: int, dropout: float, logit_scale: float, batch_norm: bool = False):
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
                       *([nn.BatchNorm2d(out_channels)] if batch_norm else []), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, height, width = out_channels, height // 2, width // 2
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.head = MLP(in_channels * height * width, hidden, n_out, dropout, logit_scale, batch_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.view(-1, *self.image_shape)))


def initialise(model: nn.Module, init: Any) -> nn.Module:
    """Re-draw the conv and linear weights with model.init's initialisers, in module order (after
    construction, as the Active Passive Loss code does); `default` keeps torch's."""
    for module in model.modules():
        kind = "conv" if isinstance(module, nn.Conv2d) else "linear" if isinstance(module, nn.Linear) else None
        draw = INITS[getattr(init, kind).name] if kind else None
        if draw is not None:
            draw(module.weight)
    return model


def build_mlp(cfg: Any, n_in: int, n_out: int, image_shape: Optional[tuple[int, int, int]]) -> nn.Module:
    return MLP(n_in, list(cfg.hidden), n_out, cfg.dropout, cfg.logit_scale, cfg.batch_norm)


def build_cnn(cfg: Any, n_in: int, n_out: int, image_shape: Optional[tuple[int, int, int]]) -> nn.Module:
    # config.validate refuses model=cnn on a dataset without images before anything loads
    return CNN(image_shape, list(cfg.channels), cfg.kernel_size, list(cfg.hidden), n_out, cfg.dropout,
               cfg.logit_scale, cfg.batch_norm)


MODELS = {"mlp": build_mlp, "cnn": build_cnn}


def build_model(cfg: Any, n_in: int, n_out: int,
                image_shape: Optional[tuple[int, int, int]] = None) -> nn.Module:
    return initialise(MODELS[cfg.name](cfg, n_in, n_out, image_shape), cfg.init)
