"""Which device a run uses, refused up front when the machine does not have it."""

from __future__ import annotations

from typing import Any, Optional

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


def seed_launcher(requested: str = "auto") -> str:
    """The launcher that trains a sweep's seeds fastest on this device: `batched` (seeds as one
    stack) on CUDA, where it turns many small kernels into one; `basic` (one run after another)
    elsewhere: on the CPU the stack measured 0.83x as fast as one-by-one runs (issue 22)."""
    return "batched" if resolve_device(requested).type == "cuda" else "basic"


def parallel_job_gpu(requested: str, job_num: int, gpus: int) -> Optional[int]:
    """The GPU job `job_num` of a parallel sweep trains on: one job per device in turn (job n on
    GPU n mod gpus), so the jobs spread over every GPU instead of all landing on the first. None
    (torch's current device) with fewer than two GPUs, or when trainer.device is cpu or mps."""
    if gpus < 2 or requested not in ("auto", "cuda"):
        return None
    return job_num % gpus


def spread_over_gpus(requested: str, launcher: Any, job_num: int) -> Optional[int]:
    """Under a parallel launcher (joblib, Ray), make this job's GPU (parallel_job_gpu) torch's
    current device, which `cuda` without an index means; returns it (None: nothing changed). A Ray
    job given num_gpus sees only its own GPU(s) (Ray sets CUDA_VISIBLE_DEVICES), so with one GPU
    each this changes nothing; without num_gpus it sees them all, as a joblib job does."""
    target = str(launcher.get("_target_", ""))
    if "joblib" not in target and "hydra_ray_launcher" not in target:
        return None
    gpu = parallel_job_gpu(requested, job_num, torch.cuda.device_count())
    if gpu is not None:
        torch.cuda.set_device(gpu)
    return gpu


def check_device(requested: str, precision: str) -> None:
    if requested != "auto" and requested not in available_devices():
        raise ConfigError(
            f"trainer.device={requested} is not available on this machine; available: "
            f"{', '.join(available_devices())} (or auto, which picks cuda, then mps, then cpu)"
        )
    if precision == "16" and resolve_device(requested).type == "mps":
        raise ConfigError("trainer.precision=16 is not supported on mps here; use 32 or bf16")
