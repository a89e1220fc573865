"""A configurable plain CNN: (conv -> [BN] -> act -> pool)* -> flatten -> (dense -> act)* -> logits.

The lecture's "full CNN", with every size a config field. The default is the
2-conv + pooling network of the TensorFlow tutorial (Fashion-MNIST anchor 0.916).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import BatchNorm, ConvBlock, Conv2D, Dense, Flatten, Pool, activation, check_images
from cnn_jax.models.registry import MODELS


@MODELS.register("simple_cnn")
class SimpleCNN(nn.Module):
  """Attributes:
  conv_features: kernels per conv block, e.g. (32, 64).
  kernel_size: square kernel size of every conv.
  dense_features: hidden fully connected widths, e.g. (128,).
  activation: activation name.
  pool: 'max' or 'avg' (2x2, stride 2) after every conv block.
  batch_norm: BatchNorm after every conv.
  dropout: dropout rate before each dense layer (needs a 'dropout' rng in training).

  Intermediate features are sown as conv1, conv2, ..., fc1, ... .
  """

  num_classes: int = 10
  conv_features: Sequence[int] = (32, 64)
  kernel_size: int = 3
  dense_features: Sequence[int] = (128,)
  activation: str = "relu"
  pool: str = "max"
  batch_norm: bool = False
  dropout: float = 0.0
  dtype: Any = jnp.float32
  axis_name: str | None = None  # BatchNorm statistics averaged over this pmap axis

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "SimpleCNN")
    x = x.astype(self.dtype)
    act = activation(self.activation)
    for i, features in enumerate(self.conv_features):
      x = ConvBlock(
          conv=functools.partial(
              Conv2D, features, self.kernel_size, padding="SAME", dtype=self.dtype
          ),
          norm=functools.partial(BatchNorm, dtype=self.dtype, axis_name=self.axis_name) if self.batch_norm else None,
          act=act,
          pool=functools.partial(Pool, self.pool, 2),
          name=f"block{i + 1}",
      )(x, train)
      self.sow("intermediates", f"conv{i + 1}", x)
    x = Flatten()(x)
    for i, features in enumerate(self.dense_features):
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = act(Dense(features, dtype=self.dtype, name=f"dense{i + 1}")(x))
      self.sow("intermediates", f"fc{i + 1}", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = Dense(self.num_classes, dtype=self.dtype, name="output")(x)
    return x.astype(jnp.float32)
