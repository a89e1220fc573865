"""GoogLeNet / Inception v1 (Szegedy et al. 2015) in torchvision's form.

Stem: conv1 7x7/2 (64) -> max pool 3x3/2 -> conv2 1x1 (64) -> conv3 3x3 (192) ->
max pool; inception 3a, 3b -> max pool -> 4a ... 4e -> max pool 2x2/2 -> 5a, 5b ->
global average pool -> dropout 0.2 -> dense. Every conv is conv (no bias) ->
BatchNorm (eps 1e-3) -> ReLU, as in torchvision (the paper predates BatchNorm);
max pools round up (PyTorch `ceil_mode=True`).

An inception module concatenates four branches: 1x1; 1x1 -> 3x3; 1x1 -> "5x5";
3x3/1 max pool -> 1x1. torchvision's "5x5" branch is a 3x3 conv (a known quirk
of its port that its pretrained weights depend on); we match torchvision, so the
network has 6,624,904 parameters at 1,000 classes and 3 channels (13,004,888
with both auxiliary heads).

Auxiliary heads (`aux_logits=True`): after 4a and 4d, adaptive average pool to
4x4 -> 1x1 conv (128) -> dense 1,024 -> dropout 0.7 -> dense. Their logits are
sown as `aux1_logits`, `aux2_logits` (in training and at init only, like
torchvision); the classifier output is unchanged, and the train step adds their
losses with weight `config.aux_loss_weight` (0.3 in the paper and our configs).

Small inputs: the ImageNet stem divides the size by 8 before inception 3a and
runs on inputs of at least 15x15 (28x28 ends as 1x1 from stage 4 on); smaller
ones raise an error that names the fix.
`stem="cifar"` makes conv1 a 3x3/1 conv and drops the first max pool, so 28x28
reaches inception 3a at 14x14 and stage 5 at 4x4.

Intermediate features: `stem` (192 channels, before 3a), `inception3`, `inception4`,
`inception5` (the outputs of 3b, 4e, 5b) and `pooled`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import (
    AdaptiveAvgPool, BatchNorm, ConvBlock, Conv2D, Dense, Flatten, GlobalAvgPool, ModuleDef, Pool,
    activation, ceil_mode_padding, check_images,
)
from cnn_jax.models.receptive_field import LayerSpec, check_input_size
from cnn_jax.models.registry import MODELS

STEMS = ("imagenet", "cifar")
# (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection) kernels per module.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
# torchvision's init: truncated normal, std 0.01 (its bounds are +-2, i.e. +-200 std).
INIT = nn.initializers.normal(0.01)


def _ceil_pool(x: jax.Array, window: int, stride: int, name: str) -> jax.Array:
  padding = [ceil_mode_padding(x.shape[1], window, stride),
             ceil_mode_padding(x.shape[2], window, stride)]
  return Pool("max", window, stride, padding=padding, name=name)(x)


class Inception(nn.Module):
  """Four parallel branches, concatenated: `[B, H, W, C] -> [B, H, W, sum of branch kernels]`."""

  kernels: tuple[int, int, int, int, int, int]
  conv: ModuleDef  # a conv -> BN -> act block constructor taking (features, kernel size)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c1, c3r, c3, c5r, c5, cp = self.kernels
    b1 = self.conv(c1, 1, name="branch1")(x, train)
    b2 = self.conv(c3r, 1, name="branch2a")(x, train)
    b2 = self.conv(c3, 3, name="branch2b")(b2, train)
    b3 = self.conv(c5r, 1, name="branch3a")(x, train)
    b3 = self.conv(c5, 3, name="branch3b")(b3, train)  # 3x3, not 5x5: torchvision's quirk
    b4 = Pool("max", 3, 1, padding=1, name="branch4pool")(x)
    b4 = self.conv(cp, 1, name="branch4")(b4, train)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
  """Auxiliary classifier: `[B, H, W, C] -> [B, num_classes]`."""

  num_classes: int
  conv: ModuleDef
  act: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = AdaptiveAvgPool(4)(x)
    x = Flatten()(self.conv(128, 1, name="conv")(x, train))
    x = self.act(Dense(1024, dtype=self.dtype, kernel_init=INIT, name="fc1")(x))
    x = nn.Dropout(0.7, deterministic=not train)(x)
    return Dense(self.num_classes, dtype=self.dtype, kernel_init=INIT, name="fc2")(x)


@MODELS.register("googlenet")
class GoogLeNet(nn.Module):
  """GoogLeNet (torchvision). Input `[B, H, W, C]` -> logits `[B, num_classes]`.

  Attributes:
    num_classes: output classes.
    aux_logits: build the two auxiliary classifiers (sown as aux1_logits, aux2_logits).
    activation: activation name (ReLU in the paper).
    dropout: dropout rate before the classifier (0.2 in torchvision).
    stem: 'imagenet' or 'cifar' (3x3/1 conv1, no first max pool) for small inputs.
    dtype: compute dtype; parameters stay float32.
  """

  num_classes: int = 1000
  aux_logits: bool = False
  activation: str = "relu"
  dropout: float = 0.2
  stem: str = "imagenet"
  dtype: Any = jnp.float32
  axis_name: str | None = None  # pmap: BatchNorm statistics over this axis

  def layer_specs(self) -> list[LayerSpec]:
    if self.stem not in STEMS:
      raise ValueError(f"Unknown stem {self.stem!r}. Known stems: {', '.join(STEMS)}.")
    if self.stem == "imagenet":
      specs = [LayerSpec("conv1", kernel=7, stride=2, padding=3),
               LayerSpec("maxpool1", "maxpool", 3, 2, ceil_mode=True)]
    else:
      specs = [LayerSpec("conv1", kernel=3, padding=1)]
    specs += [LayerSpec("conv2"), LayerSpec("conv3", kernel=3, padding=1),
              LayerSpec("maxpool2", "maxpool", 3, 2, ceil_mode=True, feature="stem")]
    for key in INCEPTION:
      # The largest receptive field through a module: 1x1 -> 3x3 (or 3x3 pool -> 1x1).
      feature = {"3b": "inception3", "4e": "inception4", "5b": "inception5"}.get(key)
      specs.append(LayerSpec(f"inception{key}", "block", 3, 1, 1, feature=feature))
      if self.aux_logits and key in ("4a", "4d"):
        specs.append(LayerSpec("aux1" if key == "4a" else "aux2", "branch"))
      if key == "3b":
        specs.append(LayerSpec("maxpool3", "maxpool", 3, 2, ceil_mode=True))
      if key == "4e":
        specs.append(LayerSpec("maxpool4", "maxpool", 2, 2, ceil_mode=True))
    return specs + [LayerSpec("avgpool", "global", feature="pooled"), LayerSpec("fc", "dense")]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "GoogLeNet")
    check_input_size(self.layer_specs(), x, "GoogLeNet", "Use --config.model.stem=cifar or "
                     "resize the images (--config.data.image_size=32).")
    x = x.astype(self.dtype)
    act = activation(self.activation)
    norm = functools.partial(BatchNorm, epsilon=1e-3, dtype=self.dtype, axis_name=self.axis_name)

    def conv(features: int, kernel: int, strides: int = 1, name: str | None = None) -> nn.Module:
      c = functools.partial(Conv2D, features, kernel, strides=strides, padding=kernel // 2,
                            use_bias=False, dtype=self.dtype, kernel_init=INIT)
      return ConvBlock(c, act, norm, name=name)

    if self.stem == "imagenet":
      x = conv(64, 7, 2, name="conv1")(x, train)
      x = _ceil_pool(x, 3, 2, "maxpool1")
    else:
      x = conv(64, 3, name="conv1")(x, train)
    x = conv(64, 1, name="conv2")(x, train)
    x = conv(192, 3, name="conv3")(x, train)
    x = _ceil_pool(x, 3, 2, "maxpool2")
    self.sow("intermediates", "stem", x)
    with_aux = self.aux_logits and (train or self.is_initializing())
    for key, kernels in INCEPTION.items():
      x = Inception(kernels, conv, name=f"inception{key}")(x, train)
      if key in ("4a", "4d") and with_aux:
        aux_name = "aux1" if key == "4a" else "aux2"
        aux = InceptionAux(self.num_classes, conv, act, self.dtype, name=aux_name)(x, train)
        self.sow("intermediates", f"{aux_name}_logits", aux.astype(jnp.float32))
      if key == "3b":
        self.sow("intermediates", "inception3", x)
        x = _ceil_pool(x, 3, 2, "maxpool3")
      if key == "4e":
        self.sow("intermediates", "inception4", x)
        x = _ceil_pool(x, 2, 2, "maxpool4")
    self.sow("intermediates", "inception5", x)
    x = GlobalAvgPool(name="avgpool")(x)
    self.sow("intermediates", "pooled", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = Dense(self.num_classes, dtype=self.dtype, kernel_init=INIT, name="fc")(x)
    return x.astype(jnp.float32)
