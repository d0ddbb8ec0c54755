"""model=cnn: a LeNet-style network on 28x28 and 56x56 images, refused on feature vectors."""

import json
import math

import pytest
import torch

from lossbench.errors import ConfigError
from lossbench.training.model import CNN, build_model

from conftest import compose_config, run_cli


@pytest.mark.parametrize("side, kernel, channels", [(28, 5, "[6,16]"), (56, 5, "[6,16]"), (28, 4, "[4,4,4]")])
def test_cnn_maps_flat_images_of_either_size_to_one_logit_per_class(side, kernel, channels):
    # An even kernel through three blocks reaches an odd-sided map (7x7), where "same" matters.
    cfg = compose_config("model=cnn", f"model.kernel_size={kernel}", f"model.channels={channels}").model
    model = build_model(cfg, side * side, 10, (1, side, side))
    assert isinstance(model, CNN)
    logits = model(torch.randn(3, side * side))
    assert logits.shape == (3, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("dataset, extra, metric", [
    ("mnist", ["loss=ce"], "test_acc"),
    ("multi_mnist", ["loss=bce_logits", "dataset.n_train=300", "dataset.n_test=100"], "test_map"),
])
def test_cnn_trains_one_epoch_on_each_image_size(tmp_path, dataset, extra, metric):
    result = run_cli("model=cnn", f"dataset={dataset}", "dataset.source=sample", "trainer.epochs=1",
                     *extra, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 1
    assert math.isfinite(summary[metric]) and summary["mean_epoch_time_s"] > 0


def test_cli_refuses_cnn_on_the_synthetic_vector_set(tmp_path):
    result = run_cli("model=cnn", "dataset=multilabel", "loss=bce_logits", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "model=cnn needs images; dataset=multilabel holds feature vectors" in output


def test_cli_refuses_a_cnn_kernel_wider_than_its_maps_before_data_loads(tmp_path):
    result = run_cli("model=cnn", "model.kernel_size=40", "dataset.source=sample", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output and "data: " not in output
    assert "model.kernel_size=40 is too wide for this data's 28x28 images" in output
    assert "accepted: 1..27" in output


@pytest.mark.parametrize("kernel, refused", [(27, False), (28, True), (26, False)])
def test_cnn_kernel_refused_once_its_outer_weights_touch_only_padding(kernel, refused):
    # 28x28 through two blocks: the second convolves 14x14 maps; a kernel of 28 has 14 zeros of
    # padding on a side, so its first weight meets no pixel at any position.
    cfg = compose_config("model=cnn", f"model.kernel_size={kernel}").model
    if refused:
        with pytest.raises(ConfigError, match="too wide"):
            build_model(cfg, 28 * 28, 10, (1, 28, 28))
        return
    model = build_model(cfg, 28 * 28, 10, (1, 28, 28))
    model(torch.randn(2, 28 * 28)).sum().backward()
    conv = model.features[3]
    assert (conv.weight.grad[..., 0, :] != 0).any() and (conv.weight.grad[..., -1, :] != 0).any()
