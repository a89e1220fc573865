"""VGG-11/13/16/19 (Simonyan & Zisserman 2015, configurations A, B, D, E) in torchvision's
form, with and without BatchNorm.

Five blocks of 3x3/1 convs (padding 1; 64, 128, 256, 512, 512 kernels), each
followed by a 2x2/2 max pool; an adaptive average pool to 7x7 (an identity at
224x224); dense 25,088 -> 4,096 -> 4,096 -> num_classes with ReLU and dropout
0.5. The `_bn` variants put BatchNorm between each conv and its ReLU and keep
the conv biases, as torchvision does. Parameters at 1,000 classes, 3 channels:
vgg11 132,863,336 · vgg11_bn 132,868,840 · vgg13 133,047,848 ·
vgg16 138,357,544 · vgg16_bn 138,365,992 · vgg19 143,667,240.

Small inputs: five halvings need at least 32x32 (a 32x32 image ends as 1x1 at
pool5, which the adaptive pool repeats to 7x7, exactly as torchvision does).
Smaller inputs raise an error that names two fixes: resize
(`--config.data.image_size=32`) or `stem="cifar"`, which rounds pool outputs up
(PyTorch's `ceil_mode=True`), so 28 -> 14 -> 7 -> 4 -> 2 -> 1; same parameters.

Intermediate features (the Caffe names): `conv1_1` ... `conv5_4`, `pool1` ...
`pool5`, `fc6`, `fc7`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import (
    AdaptiveAvgPool, BatchNorm, ConvBlock, Conv2D, Dense, Flatten, Pool, activation,
    ceil_mode_padding, check_images,
)
from cnn_jax.models.receptive_field import LayerSpec, check_input_size
from cnn_jax.models.registry import MODELS

# Convs per block for each depth (configurations A, B, D, E of the paper).
CONVS_PER_BLOCK = {
    11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4),
}
BLOCK_FEATURES = (64, 128, 256, 512, 512)
STEMS = ("imagenet", "cifar")
# torchvision's init: kaiming_normal_(fan_out) convs, N(0, 0.01) dense layers.
KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
DENSE_INIT = nn.initializers.normal(0.01)


class VGG(nn.Module):
  """VGG. Input `[B, H, W, C]` (H, W >= 32, or any with stem='cifar') -> `[B, num_classes]`.

  Attributes:
    depth: 11, 13, 16 or 19.
    batch_norm: BatchNorm after every conv (the `_bn` models).
    num_classes: output classes.
    activation: activation name (ReLU in the paper).
    dropout: dropout rate before fc7 and fc8 (needs a 'dropout' rng when training).
    stem: 'imagenet' (torchvision) or 'cifar' (ceil-mode pools for inputs under 32x32).
    dtype: compute dtype; parameters stay float32.
  """

  depth: int
  batch_norm: bool
  num_classes: int = 1000
  activation: str = "relu"
  dropout: float = 0.5
  stem: str = "imagenet"
  dtype: Any = jnp.float32
  axis_name: str | None = None  # pmap: BatchNorm statistics over this axis

  def layer_specs(self) -> list[LayerSpec]:
    if self.depth not in CONVS_PER_BLOCK:
      raise ValueError(f"VGG depth must be one of {sorted(CONVS_PER_BLOCK)}, got {self.depth}.")
    if self.stem not in STEMS:
      raise ValueError(f"Unknown stem {self.stem!r}. Known stems: {', '.join(STEMS)}.")
    specs = []
    for b, n in enumerate(CONVS_PER_BLOCK[self.depth], start=1):
      specs += [LayerSpec(f"block{b}_conv{i}", kernel=3, padding=1, feature=f"conv{b}_{i}")
                for i in range(1, n + 1)]
      specs.append(LayerSpec(f"block{b}_pool", "maxpool", 2, 2, ceil_mode=self.stem == "cifar",
                             feature=f"pool{b}"))
    return specs + [
        LayerSpec("avgpool", "adaptive", size=7),
        LayerSpec("dense1", "dense", feature="fc6"),
        LayerSpec("dense2", "dense", feature="fc7"),
        LayerSpec("output", "dense"),
    ]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    name = type(self).__name__
    check_images(x, name)
    check_input_size(
        self.layer_specs(), x, name,
        "Resize the images (--config.data.image_size=32) or use --config.model.stem=cifar.",
    )
    x = x.astype(self.dtype)
    act = activation(self.activation)
    norm = functools.partial(BatchNorm, dtype=self.dtype, axis_name=self.axis_name) if self.batch_norm else None
    for b, n in enumerate(CONVS_PER_BLOCK[self.depth], start=1):
      for i in range(1, n + 1):
        conv = functools.partial(Conv2D, BLOCK_FEATURES[b - 1], 3, padding=1, dtype=self.dtype,
                                 kernel_init=KAIMING_FAN_OUT)
        x = ConvBlock(conv, act, norm, name=f"block{b}_conv{i}")(x, train)
        self.sow("intermediates", f"conv{b}_{i}", x)
      padding: Any = "VALID"
      if self.stem == "cifar":
        padding = [ceil_mode_padding(x.shape[1], 2, 2), ceil_mode_padding(x.shape[2], 2, 2)]
      x = Pool("max", 2, 2, padding=padding, name=f"block{b}_pool")(x)
      self.sow("intermediates", f"pool{b}", x)
    x = Flatten()(AdaptiveAvgPool(7, name="avgpool")(x))
    dense = functools.partial(Dense, dtype=self.dtype, kernel_init=DENSE_INIT)
    x = act(dense(4096, name="dense1")(x))
    self.sow("intermediates", "fc6", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = act(dense(4096, name="dense2")(x))
    self.sow("intermediates", "fc7", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = dense(self.num_classes, name="output")(x)
    return x.astype(jnp.float32)


def _register(depth: int, batch_norm: bool) -> None:
  name = f"vgg{depth}" + ("_bn" if batch_norm else "")
  cls_name = f"VGG{depth}" + ("BN" if batch_norm else "")
  cls = type(cls_name, (VGG,), {
      "__annotations__": {"depth": int, "batch_norm": bool},
      "depth": depth,
      "batch_norm": batch_norm,
      "__module__": __name__,
      "__doc__": f"VGG-{depth}{'-BN' if batch_norm else ''} (torchvision's `{name}`).",
  })
  globals()[cls_name] = MODELS.register(name)(cls)


for _depth in CONVS_PER_BLOCK:
  for _bn in (False, True):
    _register(_depth, _bn)
