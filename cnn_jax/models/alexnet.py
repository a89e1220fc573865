"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) in torchvision's form.

torchvision follows the "one weird trick" variant (Krizhevsky 2014): one tower,
64/192/384/256/256 kernels, no local response normalisation.
conv1 11x11/4 pad 2 -> pool 3x3/2 -> conv2 5x5 pad 2 -> pool -> conv3..5 3x3 pad 1
-> pool -> adaptive average pool to 6x6 (an identity at 224x224) -> dropout 0.5,
dense 9,216 -> 4,096, ReLU, dropout 0.5, dense 4,096 -> 4,096, ReLU, dense ->
num_classes. 61,100,840 parameters at 1,000 classes and 3 channels (torchvision's).

Small inputs: the ImageNet network needs at least 63x63 (three 3x3/2 pools after
a stride-4 conv). Smaller inputs raise an error naming two fixes: resize
(`--config.data.image_size=64`) or `stem="cifar"`, which makes conv1 a 3x3/1 conv
with padding 1 (64 kernels, as before) and keeps everything else, so 28x28 runs
as 28 -> 13 -> 6 -> 2 (pool5) -> 6x6 (the adaptive pool repeats pixels, as
torchvision's does); it works from 15x15.

Intermediate features: `conv1` ... `conv5`, `pool1`, `pool2`, `pool5`, `fc6`, `fc7`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import (
    AdaptiveAvgPool, ConvBlock, Conv2D, Dense, Flatten, Pool, activation, check_images,
)
from cnn_jax.models.receptive_field import LayerSpec, check_input_size
from cnn_jax.models.registry import MODELS

STEMS = ("imagenet", "cifar")
# (kernels, kernel size, stride, padding, max pool after) of conv1 ... conv5.
CONVS = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
         (256, 3, 1, 1, False), (256, 3, 1, 1, True))
CIFAR_CONV1 = (64, 3, 1, 1, True)


@MODELS.register("alexnet")
class AlexNet(nn.Module):
  """AlexNet. Input `[B, H, W, C]` (H, W >= 63, or >= 15 with stem='cifar') -> `[B, num_classes]`.

  Attributes:
    num_classes: output classes.
    activation: activation name (ReLU in the paper).
    dropout: dropout rate before fc6 and fc7 (needs a 'dropout' rng when training).
    stem: 'imagenet' (11x11/4 conv1) or 'cifar' (3x3/1 conv1) for small inputs.
    dtype: compute dtype; parameters stay float32.
  """

  num_classes: int = 1000
  activation: str = "relu"
  dropout: float = 0.5
  stem: str = "imagenet"
  dtype: Any = jnp.float32

  def _convs(self) -> tuple[tuple[int, int, int, int, bool], ...]:
    if self.stem not in STEMS:
      raise ValueError(f"Unknown stem {self.stem!r}. Known stems: {', '.join(STEMS)}.")
    return ((CIFAR_CONV1,) if self.stem == "cifar" else CONVS[:1]) + CONVS[1:]

  def layer_specs(self) -> list[LayerSpec]:
    specs = []
    for i, (_, k, s, p, pool) in enumerate(self._convs(), start=1):
      specs.append(LayerSpec(f"block{i}_conv", kernel=k, stride=s, padding=p, feature=f"conv{i}"))
      if pool:
        specs.append(LayerSpec(f"block{i}_pool", "maxpool", 3, 2, feature=f"pool{i}"))
    return specs + [
        LayerSpec("avgpool", "adaptive", size=6),
        LayerSpec("dense1", "dense", feature="fc6"),
        LayerSpec("dense2", "dense", feature="fc7"),
        LayerSpec("output", "dense"),
    ]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "AlexNet")
    check_input_size(
        self.layer_specs(), x, "AlexNet",
        "Resize the images (--config.data.image_size=64) or use --config.model.stem=cifar.",
    )
    x = x.astype(self.dtype)
    act = activation(self.activation)
    for i, (features, k, s, p, pool) in enumerate(self._convs(), start=1):
      conv = functools.partial(Conv2D, features, k, strides=s, padding=p, dtype=self.dtype)
      x = ConvBlock(conv, act, name=f"block{i}_conv")(x, train)
      self.sow("intermediates", f"conv{i}", x)
      if pool:
        x = Pool("max", 3, 2, name=f"block{i}_pool")(x)
        self.sow("intermediates", f"pool{i}", x)
    x = Flatten()(AdaptiveAvgPool(6, name="avgpool")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = act(Dense(4096, dtype=self.dtype, name="dense1")(x))
    self.sow("intermediates", "fc6", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = act(Dense(4096, dtype=self.dtype, name="dense2")(x))
    self.sow("intermediates", "fc7", x)
    x = Dense(self.num_classes, dtype=self.dtype, name="output")(x)
    return x.astype(jnp.float32)
