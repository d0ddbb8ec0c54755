"""The models: an MLP from flat features, a LeNet-style CNN for images, and the ones lossbench does
not define (lossbench.training.brought_models: ResNet-18, timm, a custom factory), to one logit per output."""

from __future__ import annotations

import difflib
from typing import Any, Optional

from torch import Tensor, nn

from lossbench.training.brought_models import (TIMM_INSTALL, Brought, brought, build_custom, build_resnet,
                                      build_timm, check_output, locate, timm_available)
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


MODELS = {"mlp": build_mlp, "cnn": build_cnn, "resnet": brought(build_resnet), "custom": brought(build_custom)}
# Models whose seeds hidden/batched.py cannot stack with torch.func, and why (any timm model too).
UNSTACKABLE = {
    "resnet": "batch norm updates its running statistics in place, which a vmapped stack cannot do per seed",
    "custom": "lossbench cannot tell whether a model it did not define (batch norm, buffers, "
              "in-place state) stacks under torch.func",
}
TIMM_UNSTACKABLE = "a timm model may hold batch norm or other in-place state that torch.func cannot stack"


def is_timm(name: str) -> bool:
    """A model.name lossbench does not define is a timm architecture (model=timm)."""
    return name not in MODELS


def builder(name: str):
    return brought(build_timm) if is_timm(name) else MODELS[name]


def build_model(cfg: Any, n_in: int, n_out: int, image_shape: Optional[tuple[int, int, int]] = None,
                batch: Optional[Tensor] = None) -> nn.Module:
    """Given a `batch` of the loaded data, the image size is checked first (for a dataset that
    cannot say it before loading), and a model lossbench did not define is run on it once."""
    problems = image_size_problems(cfg, image_shape)
    if problems:
        raise ConfigError("\n".join(problems))
    model = initialise(builder(cfg.name)(cfg, n_in, n_out, image_shape), cfg.init)
    if batch is not None and isinstance(model, Brought):
        check_output(model, batch, n_out, f"model.name={cfg.name}")
    return model


def describe(cfg: Any) -> str:
    """The model as a run's log line names it."""
    if cfg.name in ("mlp", "cnn"):
        return f"{cfg.name} {list(cfg.hidden)}"
    return f"custom {cfg._target_}" if cfg.name == "custom" else cfg.name


def cnn_min_side(channels: list[int]) -> int:
    """Each block halves the image (2x2 max-pool, floor): below 2**blocks a map reaches 0 pixels."""
    return 2 ** len(channels)


def image_size_problems(cfg: Any, image_shape: Optional[tuple[int, ...]]) -> list[str]:
    """The image is too small for the model's layers (known before loading when the dataset
    registry can say its shape, else checked after loading, before the model is built): each
    block halves it, and a kernel's outer weights must reach a pixel somewhere. With same padding
    (k // 2 zeros on the far side) on an m-pixel map, they do while k // 2 < m: beyond that some
    weights multiply only padding at every position and never train."""
    if cfg.name != "cnn" or image_shape is None or len(image_shape) != 3:
        return []
    side, height, width = cnn_min_side(cfg.channels), image_shape[1], image_shape[2]
    blocks = len(cfg.channels)
    if min(height, width) < side:
        return [f"model=cnn with {blocks} conv blocks (model.channels={list(cfg.channels)}) halves the "
                f"image {blocks} times, so it needs images of at least {side}x{side}; this data's are "
                f"{height}x{width}. Use at most {max(min(height, width).bit_length() - 1, 0)} blocks "
                f"(model.channels), model=resnet (any size) or model=mlp"]
    last = min(height, width) // 2 ** max(blocks - 1, 0)  # the smallest map a kernel slides over
    if cfg.kernel_size // 2 >= last:
        return [f"model.kernel_size={cfg.kernel_size} is too wide for this data's {height}x{width} images: "
                f"they shrink to {last}x{last} by the last of the {blocks} conv blocks (model.channels="
                f"{list(cfg.channels)}), where some of its weights would only ever multiply padding; "
                f"accepted: 1..{2 * last - 1}"]
    return []


def name_problems(cfg: Any, images: bool) -> list[str]:
    """The model is one lossbench can build for this data, before anything is imported or loaded."""
    name = cfg.name
    accepted = ", ".join(sorted(MODELS))
    if is_timm(name):
        if not timm_available():
            return [f"model.name={name!r} is not a lossbench model ({accepted}), and timm, which "
                    f"would build it as a timm architecture (model=timm), is not installed: {TIMM_INSTALL}"]
        import timm

        if not timm.is_model(name):
            near = difflib.get_close_matches(name, list(MODELS) + timm.list_models(), n=3)
            return [f"model.name={name!r} is neither a lossbench model ({accepted}) nor a timm "
                    f"architecture{'; did you mean ' + ', '.join(near) + '?' if near else ''}"]
    if name == "custom" and not cfg.get("_target_"):
        return ["model=custom needs model._target_=package.module.factory (a callable returning a "
                "torch.nn.Module; its keyword arguments as +model.<name>=value)"]
    if name == "custom":
        locate(cfg._target_)
    if not images and (name == "resnet" or is_timm(name)):  # model=cnn: config.py says so
        return [f"model.name={name} takes images; this dataset holds feature vectors. Use model=mlp "
                "or model=custom"]
    return []


def unstackable_model(cfg: Any) -> Optional[str]:
    if is_timm(cfg.name):
        return f"model.name={cfg.name} (timm): {TIMM_UNSTACKABLE}"
    why = UNSTACKABLE.get(cfg.name)
    return f"model={cfg.name}: {why}" if why else None
