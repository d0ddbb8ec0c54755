"""Which device a run uses, refused up front when the machine does not have it."""

from __future__ import annotations

import torch

from lossbench.errors import ConfigError


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        for name in ("cuda", "mps"):
            if name in available_devices():
                return torch.device(name)
        return torch.device("cpu")
    return torch.device(requested)


def check_device(requested: str, precision: str) -> None:
    if requested != "auto" and requested not in available_devices():
        raise ConfigError(
            f"trainer.device={requested} is not available on this machine; available: "
            f"{', '.join(available_devices())} (or auto, which picks cuda, then mps, then cpu)"
        )
    if precision == "16" and resolve_device(requested).type == "mps":
        raise ConfigError("trainer.precision=16 is not supported on mps here; use 32 or bf16")
