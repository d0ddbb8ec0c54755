"""The model: an MLP from flat features to one logit per class."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


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


def build_mlp(cfg: Any, n_in: int, n_out: int) -> nn.Module:
    return MLP(n_in, list(cfg.hidden), n_out, cfg.dropout, cfg.logit_scale)


MODELS = {"mlp": build_mlp}


def build_model(cfg: Any, n_in: int, n_out: int) -> nn.Module:
    return MODELS[cfg.name](cfg, n_in, n_out)
