"""The losses: one module per loss, `lossbench/losses/<name>.py`, holding its params dataclass
(the schema of `conf/loss/<name>.yaml`), its criterion (or the torch one it wraps), its `SPEC`
(a `LossSpec`: formula, reference, what the criterion sees, its float64 closed form and how the
probe explains its thresholds). This registry discovers the modules; nothing else lists losses
by name.

Adding a loss: `lossbench/losses/<name>.py` with one `SPEC` named <name>, and
`conf/loss/<name>.yaml`. The presets that sweep every loss, the docs catalogue
(`python -m lossbench.docs_gen`), the probe and the parametrised tests read the registry.

The four torch losses (z = logits of one sample, y its target):
- ce:         CrossEntropyLoss(z, c)            = -z_c + logsumexp(z)
- nll:        NLLLoss(log_softmax(z), c)        = the same number, the log-softmax moved outside
- bce:        BCELoss(sigmoid(z), y)            = -sum_i [y_i log p_i + (1-y_i) log(1-p_i)] / n,
              with each log clamped at -100 by torch, so saturated sigmoids cap the loss at 100
              and zero the gradient
- bce_logits: BCEWithLogitsLoss(z, y)           = the same formula computed from z with
              log-sum-exp (softplus), exact where sigmoid saturates
The rest of the family is written here from log_softmax or logsigmoid (`_criteria.py`).

May import torch, numpy, scikit-learn, torchvision and lossbench.errors; nothing else of lossbench.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ._criteria import SigmoidLoss, SoftmaxLoss
from ._params import LossParams, loss_label
from ._spec import (BASELINE, LossSpec, Probabilities, Targets, Task, TrainingLabels, encode_targets,
                    head_width, probabilities)

__all__ = [
    "LOSSES", "BASELINE", "LossParams", "LossSpec", "Probabilities", "SigmoidLoss", "SoftmaxLoss",
    "Targets", "Task", "TrainingLabels", "encode_targets", "head_width", "loss_label", "loss_params",
    "probabilities", "loss_modules", "spec_of",
]


def loss_modules() -> list[str]:
    """The modules of this package that are losses: every one not starting with "_"."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def spec_of(name: str, module: Any) -> LossSpec:
    """The one spec a loss module registers: its `SPEC`, named as the module."""
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, LossSpec) or spec.name != name:
        found = "no SPEC" if spec is None else f"SPEC = {getattr(spec, 'name', spec)!r}"
        raise TypeError(f"lossbench/losses/{name}.py must define SPEC, a LossSpec named {name!r} "
                        f"(it has {found}); helper modules' names start with '_'")
    return spec


def _discover() -> dict[str, LossSpec]:
    specs = [spec_of(name, importlib.import_module(f"{__name__}.{name}")) for name in loss_modules()]
    return {spec.name: spec for spec in sorted(specs, key=lambda spec: (spec.order, spec.name))}


LOSSES: dict[str, LossSpec] = _discover()


def loss_params(loss_cfg: Any) -> LossParams:
    """The loss's knobs as its own params dataclass (config.validate has refused unknown keys)."""
    from omegaconf import OmegaConf

    return LOSSES[loss_cfg.name].params(**OmegaConf.to_container(loss_cfg, resolve=True))
