"""A compact residual CNN for fast training on small images (speed-run recipes).

In the spirit of the fast CIFAR-10 networks (Page's ResNet-9, 2018; Jordan's airbench,
2024): few layers, wide channels, downsampling by max pooling *before* BatchNorm (the
normalisation and activation then run on a quarter of the pixels), and one residual
block per stage:

  stem:    conv 3x3 (stem_width) -> BN -> act                              [B, H, W, s]
  stage i: conv 3x3 (widths[i]) -> max pool 2 -> BN -> act                  [B, H/2^i, ., w]
           x + (conv 3x3 -> BN -> act -> conv 3x3 -> BN -> act)(x)   (residual block)
  head:    global max pool -> dense (num_classes) -> x logit_scale

Convolutions have no bias (BatchNorm follows each). `logit_scale` (0.125 in Page's
ResNet-9) keeps the initial logits small: the max-pooled features after an activation
are large and positive, and unscaled logits would start out confidently wrong.

Parameters (C input channels, s = stem_width, w_i = widths[i], K classes, w_0 = s):
  stem 9*C*s + 2s;  stage i: 9*w_{i-1}*w_i + 2*w_i + 2*(9*w_i^2 + 2*w_i);
  head w_last*K + K.

Intermediate features: `stem`, `stage1` ... (after each residual block), `pooled`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import (
  BatchNorm,
  Conv2D,
  ConvBlock,
  Dense,
  ModuleDef,
  Pool,
  activation,
  check_images,
)
from cnn_jax.models.registry import MODELS


class ResidualBlock(nn.Module):
  """`x + (conv -> norm -> act -> conv -> norm -> act)(x)`, shape-preserving."""

  features: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv3x3 = functools.partial(self.conv, self.features, 3, padding=1)
    y = ConvBlock(conv3x3, self.act, self.norm, name="conv1")(x, train)
    y = ConvBlock(conv3x3, self.act, self.norm, name="conv2")(y, train)
    return x + y


@MODELS.register("compact_resnet")
class CompactResNet(nn.Module):
  """Input `[B, H, W, C]` -> logits `[B, num_classes]`; each stage halves H and W.

  Attributes:
    num_classes: output classes.
    stem_width: kernels of the stem conv.
    widths: kernels of each stage (its conv and residual block); one pool per stage.
    activation: activation name.
    logit_scale: the logits are the dense layer's output times this.
    dtype: compute dtype (e.g. bfloat16); parameters stay float32.
  """

  num_classes: int = 10
  stem_width: int = 32
  widths: Sequence[int] = (64, 128, 256)
  activation: str = "gelu"
  logit_scale: float = 0.125
  dtype: Any = jnp.float32
  axis_name: str | None = None  # pmap: BatchNorm statistics over this axis

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "CompactResNet")
    n = len(self.widths)
    if min(x.shape[1:3]) < 2**n:
      raise ValueError(
          f"CompactResNet with {n} stages halves the image {n} times and needs at least "
          f"{2**n}x{2**n} pixels, got {x.shape[1]}x{x.shape[2]}; use fewer stages, e.g. "
          "--config.model.widths='(64, 128)'."
      )
    x = x.astype(self.dtype)
    act = activation(self.activation)
    conv = functools.partial(Conv2D, use_bias=False, dtype=self.dtype)
    norm = functools.partial(BatchNorm, dtype=self.dtype, axis_name=self.axis_name)
    x = ConvBlock(functools.partial(conv, self.stem_width, 3, padding=1), act, norm,
                  name="stem_conv")(x, train)
    self.sow("intermediates", "stem", x)
    for i, width in enumerate(self.widths):
      # Pool before the norm: BN and the activation see a quarter of the conv's pixels.
      x = conv(width, 3, padding=1, name=f"stage{i + 1}_conv")(x)
      x = Pool("max", 2, name=f"stage{i + 1}_pool")(x)
      x = act(norm(name=f"stage{i + 1}_norm")(x, train))
      x = ResidualBlock(width, conv, norm, act, name=f"stage{i + 1}_res")(x, train)
      self.sow("intermediates", f"stage{i + 1}", x)
    x = jnp.max(x, axis=(1, 2))
    self.sow("intermediates", "pooled", x)
    x = Dense(self.num_classes, dtype=self.dtype, name="output")(x)
    return x.astype(jnp.float32) * self.logit_scale
