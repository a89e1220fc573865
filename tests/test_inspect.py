"""The receptive-field report CLI and the landmark-model training configs."""

import functools
import importlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from cnn_jax.models import create_model
from experiments.inspect import inspect_model
from conftest import REPO

CONFIGS = [
    "resnet18_fashion_mnist", "resnet20_fashion_mnist", "vgg11_bn_fashion_mnist",
    "alexnet_fashion_mnist", "googlenet_fashion_mnist",
    "resnet18_cifar10", "resnet20_cifar10", "vgg11_bn_cifar10", "alexnet_cifar10",
    "googlenet_cifar10",
]


def _row(text: str, name: str) -> list[str]:
  return next(line.split() for line in text.splitlines() if line.startswith(name + " "))


def test_vgg16_report_rows_and_torchvision_anchor():
  text = inspect_model("vgg16", 224, 3)
  conv5_3 = _row(text, "block5_conv3")
  assert conv5_3[1:] == ["conv5_3", "conv", "3/1/1", "14x14x512", "16", "196", "2,359,808"]
  assert _row(text, "block5_pool")[4:7] == ["7x7x512", "32", "212"]
  assert "total parameters: 138,357,544" in text
  assert "published (torchvision): 138,357,544 -> equal" in text


def test_lenet5_report_c5_covers_the_input():
  text = inspect_model("lenet5", 32, 1)
  assert _row(text, "c5")[1:7] == ["C5", "conv", "5/1/0", "1x1x120", "4", "32*"]
  assert "published (LeCun et al. 1998, modern form): 61,706 -> equal" in text


def test_small_configuration_is_not_compared_with_the_imagenet_figure():
  text = inspect_model("resnet18", 28, 1, num_classes=10, stem="cifar")
  assert "stem=cifar" in text and "not comparable here" in text
  assert _row(text, "conv1")[1:5] == ["stem", "conv", "3/1/1", "28x28x64"]
  assert _row(text, "layer4_1/conv2")[1:5] == ["layer4", "conv", "3/1/1", "4x4x512"]


def test_cli_prints_the_table_and_rejects_bad_input():
  cmd = [sys.executable, "-m", "experiments.inspect"]
  ok = subprocess.run(cmd + ["--model=alexnet"], cwd=REPO, capture_output=True, text=True,
                      timeout=120)
  assert ok.returncode == 0, ok.stderr
  assert "pool5" in ok.stdout and "195" in _row(ok.stdout, "block5_pool")
  assert "published (torchvision): 61,100,840 -> equal" in ok.stdout
  bad = subprocess.run(cmd + ["--model=alexnet", "--input_size=28"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2
  assert "AlexNet needs inputs of at least 63x63, got 28x28" in bad.stderr
  assert "Traceback" not in bad.stderr


def test_unknown_model_lists_the_known_ones():
  with pytest.raises(Exception, match="Unknown model 'resnet19'. Known models: .*resnet18"):
    inspect_model("resnet19", 224, 3)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model_at_the_data_shape(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  config.lock()
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  model = create_model(config.model.name, dtype=config.dtype, **kwargs)
  channels = 1 if config.data.name == "fashion_mnist" else 3
  size = config.data.image_size or (28 if channels == 1 else 32)
  x = jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32)
  v = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  logits = jax.eval_shape(functools.partial(model.apply, train=False), v, x)
  assert logits.shape == (2, 10)


@pytest.mark.slow
def test_resnet20_config_trains_end_to_end(tmp_path):
  from configs import resnet20_fashion_mnist

  from cnn_jax.train import train_and_evaluate

  config = resnet20_fashion_mnist.get_config()
  config.data.name = "digits"  # ships with scikit-learn: no download
  config.num_epochs = 1
  config.batch_size = 128
  config.optimizer.warmup_epochs = 0.2  # 2 of the 11 steps
  config.log_every_steps = 5
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary["num_params"] == 269_722 - 3 * 16 * 9 + 16 * 9  # 1 input channel
  assert summary["test_accuracy"] > 0.2  # 10 classes: better than chance after 11 steps
