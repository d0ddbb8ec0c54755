"""Models lossbench does not define: torchvision's ResNet-18 (small-image stem), any timm
architecture, and a user's own factory (`model=custom model._target_=package.module.factory`).

Each is built for the outputs the loss needs and the data's input shape, wrapped so it takes the
flat rows lossbench stores (unflattened to (C, H, W) for images) and applies `model.logit_scale`,
then run on one batch: a factory that returns no Module, or logits of the wrong shape, is refused
with the shapes before any training.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Optional

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from lossbench.errors import ConfigError

TIMM_INSTALL = 'pip install -e ".[timm]" in a checkout, else pip install timm'


class Brought(nn.Module):
    """A model given (N, *input_shape) tensors, seen from lossbench's flat rows, logits scaled."""

    def __init__(self, net: nn.Module, input_shape: tuple[int, ...], logit_scale: float):
        super().__init__()
        self.net, self.input_shape, self.logit_scale = net, tuple(input_shape), logit_scale

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(x.view(-1, *self.input_shape))
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits


def resnet18_small(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: a 3x3 stride-1 first conv and no max-pool,
    so a 28x28 image keeps its resolution into the first block (the ImageNet stem would shrink it
    to 7x7). Random initialisation: nothing is downloaded."""
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def timm_available() -> bool:
    return importlib.util.find_spec("timm") is not None


def locate(target: str) -> Callable[..., Any]:
    """The object a dotted path names; one line when it cannot be imported."""
    module_name, _, attribute = target.rpartition(".")
    try:
        owner = importlib.import_module(module_name) if module_name else None
        found = getattr(owner, attribute) if owner is not None else importlib.import_module(target)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"model._target_={target} cannot be imported ({type(error).__name__}: "
                          f"{error}); give package.module.factory importable from this directory") from None
    if not callable(found):
        raise ConfigError(f"model._target_={target} is a {type(found).__name__}, not a callable "
                          "returning a torch.nn.Module")
    return found


def factory_kwargs(cfg: Any) -> dict[str, Any]:
    """The `+model.<name>=value` keys: every key of the model config the schema does not have."""
    from lossbench.config import ModelConfig

    schema = OmegaConf.structured(ModelConfig)
    return {key: value for key, value in OmegaConf.to_container(cfg, resolve=True).items()
            if key not in schema}


def shape_arguments(factory: Callable[..., Any], n_out: int,
                    input_shape: tuple[int, ...]) -> dict[str, Any]:
    """num_classes always; in_channels / in_chans and input_shape where the signature takes them."""
    given: dict[str, Any] = {"num_classes": n_out}
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: it gets num_classes only
        return given
    offered = {"input_shape": tuple(input_shape)}
    if len(input_shape) == 3:
        offered.update(in_channels=input_shape[0], in_chans=input_shape[0])
    # Named parameters only: a **kwargs factory (timm's) would pass unknown names further down.
    given.update({key: value for key, value in offered.items() if key in parameters
                  and parameters[key].kind != inspect.Parameter.VAR_KEYWORD})
    return given


def build_custom(cfg: Any, n_out: int, input_shape: tuple[int, ...]) -> nn.Module:
    from hydra.utils import instantiate

    target = cfg.get("_target_")
    factory = locate(target)
    arguments = {**factory_kwargs(cfg), **shape_arguments(factory, n_out, input_shape)}
    try:
        net = instantiate({"_target_": target, "_convert_": "all", **arguments})
    except Exception as error:  # the factory's own error, with the arguments it was given
        cause = error.__cause__ or error
        raise ConfigError(f"model._target_={target}({', '.join(f'{k}={v!r}' for k, v in arguments.items())}) "
                          f"failed: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                          ) from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model._target_={target} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def build_timm(cfg: Any, n_out: int, input_shape: tuple[int, ...]) -> nn.Module:
    import timm

    return timm.create_model(cfg.name, pretrained=False, num_classes=n_out, in_chans=input_shape[0])


def build_resnet(cfg: Any, n_out: int, input_shape: tuple[int, ...]) -> nn.Module:
    return resnet18_small(input_shape[0], n_out)


def brought(build: Callable[[Any, int, tuple[int, ...]], nn.Module]):
    """A builder of the registry's signature for one of the builders above."""
    def builder(cfg: Any, n_in: int, n_out: int, image_shape: Optional[tuple[int, int, int]]) -> nn.Module:
        input_shape = tuple(image_shape) if image_shape is not None else (n_in,)
        return Brought(build(cfg, n_out, input_shape), input_shape, cfg.logit_scale)
    return builder


def check_output(model: nn.Module, x: Tensor, n_out: int, what: str) -> None:
    """One forward pass on a batch of real rows, in eval mode (no batch-norm statistics move):
    a shape error from inside the model, or logits not of shape (N, n_out), is refused here."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
    except Exception as error:
        raise ConfigError(f"{what} fails on one batch of input shape {tuple(x.shape[:1]) + model.input_shape}: "
                          f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    finally:
        model.train(was_training)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"{what} has no trainable parameters: the optimizer would have nothing to train")
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (len(x), n_out):
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ConfigError(f"{what} returns {got} on input {tuple(x.shape[:1]) + model.input_shape}; "
                          f"the loss needs logits of shape ({len(x)}, {n_out}) (batch, outputs)")
