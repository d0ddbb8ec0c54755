"""Which device a sweep's jobs train on: a parallel sweep on a machine with several GPUs spreads
its jobs over them, one per device in turn; stacked seeds are the default only where they pay."""

import pytest
import torch
from omegaconf import OmegaConf

from lossbench.training import device
from lossbench.training.device import parallel_job_gpu, seed_launcher, spread_over_gpus

JOBLIB = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"})
RAY = OmegaConf.create({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"})
BASIC = OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})


def test_parallel_jobs_take_the_gpus_in_turn():
    assert [parallel_job_gpu("auto", job, 3) for job in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [parallel_job_gpu("cuda", job, 2) for job in range(4)] == [0, 1, 0, 1]


@pytest.mark.parametrize("requested, gpus", [("auto", 1), ("auto", 0), ("cpu", 4), ("mps", 4)])
def test_one_gpu_or_a_non_cuda_device_leaves_the_device_alone(requested, gpus):
    assert parallel_job_gpu(requested, 5, gpus) is None


def fake_gpus(monkeypatch, count: int) -> list[int]:
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


@pytest.mark.parametrize("launcher", [JOBLIB, RAY])
def test_a_parallel_sweep_sets_each_jobs_gpu_and_a_sequential_one_does_not(monkeypatch, launcher):
    chosen = fake_gpus(monkeypatch, 2)
    for job in range(3):
        spread_over_gpus("auto", launcher, job)
    spread_over_gpus("auto", BASIC, 1)
    assert chosen == [0, 1, 0]


def test_a_ray_job_given_one_gpu_keeps_the_one_ray_shows_it(monkeypatch):
    chosen = fake_gpus(monkeypatch, 1)  # remote.num_gpus=1: CUDA_VISIBLE_DEVICES names one GPU
    assert spread_over_gpus("auto", RAY, 3) is None and chosen == []


def test_seeds_are_stacked_by_default_on_cuda_only(monkeypatch):
    monkeypatch.setattr(device, "available_devices", lambda: ["cpu", "cuda"])
    assert seed_launcher() == "batched"
    assert seed_launcher("cpu") == "basic"
    monkeypatch.setattr(device, "available_devices", lambda: ["cpu"])
    assert seed_launcher() == "basic"
