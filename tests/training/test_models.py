"""Models you bring: a custom factory (checked on one batch), ResNet-18 with the small-image stem,
timm, the cnn's smallest image, and which models the batched launcher runs one at a time."""

import pytest
import torch
from torch import nn

import lossbench.training.model
from lossbench.training.batched import unstackable
from lossbench.training.brought_models import Brought
from lossbench.config import validate
from lossbench.errors import ConfigError
from lossbench.training.model import build_model

from conftest import compose_config, run_cli


class Tiny(nn.Module):
    """A factory taking what lossbench offers by name, and an argument of its own."""

    def __init__(self, num_classes, in_channels, input_shape, width=8):
        super().__init__()
        self.width, self.input_shape = width, input_shape
        self.net = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


def one_too_many(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, num_classes + 1))


def not_a_module(num_classes):
    return "a string"


def custom(target, *extra):
    return compose_config("model=custom", f"model._target_=test_models.{target}", *extra)


def test_custom_factory_gets_num_classes_channels_shape_and_its_own_arguments():
    cfg = custom("Tiny", "+model.width=4", "model.logit_scale=2")
    validate(cfg)  # +model.width is accepted for model=custom
    batch = torch.randn(3, 28 * 28)
    model = build_model(cfg.model, 28 * 28, 10, (1, 28, 28), batch)
    assert isinstance(model, Brought) and isinstance(model.net, Tiny)
    assert model.net.width == 4 and list(model.net.input_shape) == [1, 28, 28]
    logits = model(batch)
    assert logits.shape == (3, 10)
    assert torch.allclose(logits, 2 * model.net(batch.view(3, 1, 28, 28)))  # logit_scale applies


def test_custom_factory_with_wrong_output_shape_is_refused_with_the_shapes():
    with pytest.raises(ConfigError, match=r"returns \(2, 11\) on input \(2, 1, 28, 28\); the loss needs "
                                          r"logits of shape \(2, 10\)"):
        build_model(custom("one_too_many").model, 28 * 28, 10, (1, 28, 28), torch.randn(2, 28 * 28))


def test_custom_factory_returning_no_module_is_refused():
    with pytest.raises(ConfigError, match="returned a str, not a torch.nn.Module"):
        build_model(custom("not_a_module").model, 28 * 28, 10, (1, 28, 28), torch.randn(2, 28 * 28))


def test_own_arguments_are_refused_for_models_other_than_custom():
    with pytest.raises(ConfigError, match=r"model.width is not a key of the config"):
        validate(compose_config("model=resnet", "+model.width=4"))


def test_bad_import_path_is_one_line_before_any_data_loads(tmp_path):
    result = run_cli("model=custom", "model._target_=no_such_package.models.net", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output
    lines = [line for line in output.splitlines() if "cannot be imported" in line]
    assert lines and "No module named 'no_such_package'" in lines[0]
    assert "data:" not in output  # refused before loading


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_takes_any_channel_count_with_the_small_image_stem(channels):
    model = build_model(compose_config("model=resnet").model, channels * 8 * 8, 10, (channels, 8, 8),
                        torch.randn(2, channels * 8 * 8))
    net = model.net
    assert net.conv1.in_channels == channels and net.conv1.stride == (1, 1) and net.conv1.kernel_size == (3, 3)
    assert isinstance(net.maxpool, nn.Identity)
    logits = model(torch.randn(4, channels * 8 * 8))
    assert logits.shape == (4, 10)
    logits.sum().backward()


def test_resnet_trains_the_single_binary_logit_a_sigmoid_loss_needs():
    model = build_model(compose_config("model=resnet").model, 64, 1, (1, 8, 8), torch.randn(2, 64))
    assert model(torch.randn(3, 64)).shape == (3, 1)


def test_resnet_is_refused_on_feature_vectors():
    with pytest.raises(ConfigError, match="takes images; this dataset holds feature vectors"):
        validate(compose_config("dataset=multilabel", "loss=bce_logits", "model=resnet"))


def test_timm_model_builds_with_the_data_channels_and_outputs():
    pytest.importorskip("timm", reason="timm is an optional extra: pip install -e '.[timm]'")
    cfg = compose_config("model=timm", "model.name=test_resnet")
    validate(cfg)
    model = build_model(cfg.model, 3 * 32 * 32, 7, (3, 32, 32), torch.randn(2, 3 * 32 * 32))
    assert model(torch.randn(2, 3 * 32 * 32)).shape == (2, 7)


def test_timm_absent_is_refused_with_the_install_command(monkeypatch):
    monkeypatch.setattr(lossbench.training.model, "timm_available", lambda: False)
    with pytest.raises(ConfigError, match=r"timm.*is not installed: pip install -e \"\.\[timm\]\""):
        validate(compose_config("model=timm", "model.name=resnet18"))


def test_cnn_on_images_too_small_for_its_blocks_is_refused_with_the_smallest_size():
    cfg = compose_config("model=cnn", "model.channels=[4,4,4,4]").model
    with pytest.raises(ConfigError, match=r"4 conv blocks .* needs images of at least 16x16; this data's are 8x8"):
        build_model(cfg, 64, 10, (1, 8, 8), torch.randn(2, 64))
    # two blocks fit 8x8 (2x2 maps)
    small = build_model(compose_config("model=cnn").model, 64, 10, (1, 8, 8), torch.randn(2, 64))
    assert small(torch.randn(2, 64)).shape == (2, 10)


def test_cnn_too_deep_for_the_dataset_is_refused_before_data_loads():
    with pytest.raises(ConfigError, match=r"needs images of at least 64x64; this data's are 28x28"):
        validate(compose_config("model=cnn", "model.channels=[2,2,2,2,2,2]"))


@pytest.mark.parametrize("overrides, reason", [
    (["model=resnet"], "batch norm"),
    (["model=custom", "model._target_=test_models.Tiny"], "did not define"),
    (["model=timm"], "timm"),
    (["experiment=which_loss"], "split_seed"),
])
def test_models_and_splits_that_cannot_be_stacked_run_one_job_at_a_time(overrides, reason):
    assert reason in unstackable(compose_config(*overrides))


def test_custom_factory_trains_on_uint8_images_as_the_model_sees_them(tmp_path):
    # Images are held as uint8; the one-batch check must feed the standardised float batch the
    # training loop feeds, or every brought model on images fails with "Byte and Float".
    (tmp_path / "flatnet.py").write_text(
        "import math\nfrom torch import nn\n"
        "def build(num_classes, input_shape):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))\n")
    result = run_cli("model=custom", "model._target_=flatnet.build", "dataset.classes=[0,1]",
                     "trainer.epochs=1", "trainer.threads=1", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr



BROKEN_NETS = """
import torch
from torch import nn

class ExplodesInForward(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.linear = nn.Linear(1, num_classes)

    def forward(self, x):
        raise ValueError("forward exploded")

class NoParameters(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        return torch.zeros(len(x), self.num_classes)
"""


@pytest.mark.parametrize("target, message", [
    ("ExplodesInForward", "fails on one batch of input shape (2, 1, 28, 28): ValueError: forward exploded"),
    ("NoParameters", "has no trainable parameters"),
])
def test_custom_model_failing_its_forward_or_without_parameters_is_one_line_exit_2(tmp_path, target, message):
    (tmp_path / "brokennets.py").write_text(BROKEN_NETS)
    result = run_cli("model=custom", f"model._target_=brokennets.{target}", "trainer.epochs=1",
                     "trainer.threads=1", "hydra.run.dir=run", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert message in output
