"""LeNet-5 (LeCun et al. 1998) in its modern form.

32x32x1 input -> C1 6@5x5 -> S2 pool -> C3 16@5x5 -> S4 pool -> C5 120@5x5 ->
F6 84 -> 10 logits. "Modern form": C3 is fully connected to all six S2 maps
(the paper used a sparse connection table), S2/S4 are plain pooling with no
trainable coefficients, and the output is linear (not RBF units).
Parameters: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.

Inputs smaller than 32x32 (e.g. 28x28 MNIST / Fashion-MNIST) are zero-padded
to 32x32 evenly on each side, as LeCun et al. did for MNIST; larger inputs are
an error rather than a silently different network.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import ConvBlock, Conv2D, Dense, Flatten, Pool, activation, check_images
from cnn_jax.models.registry import MODELS

INPUT_SIZE = 32


def pad_to(x: jax.Array, size: int) -> jax.Array:
  """Zero-pads `[B, H, W, C]` evenly to `[B, size, size, C]` (extra pixel at bottom/right)."""
  _, h, w, _ = x.shape
  if h > size or w > size:
    raise ValueError(
        f"LeNet-5 takes inputs up to {size}x{size}, got {h}x{w}; resize the images "
        f"(e.g. --config.data.image_size={size})."
    )
  ph, pw = size - h, size - w
  return jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


@MODELS.register("lenet5")
class LeNet5(nn.Module):
  """LeNet-5. `activation`: tanh (default, as in the paper), relu, sigmoid, ...;
  `pool`: 'avg' (subsampling, the paper's choice) or 'max'.

  Parameters live under the lower-case layer names (`c1`, ..., `f6`, `out`);
  intermediate features are sown as `C1`, `S2`, `C3`, `S4`, `C5`, `F6`.
  """

  num_classes: int = 10
  activation: str = "tanh"
  pool: str = "avg"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "LeNet5")
    x = pad_to(x.astype(self.dtype), INPUT_SIZE)
    act = activation(self.activation)
    x = ConvBlock(functools.partial(Conv2D, 6, 5, dtype=self.dtype), act, name="c1")(x, train)
    self.sow("intermediates", "C1", x)
    x = Pool(self.pool, 2, name="s2")(x)
    self.sow("intermediates", "S2", x)
    x = ConvBlock(functools.partial(Conv2D, 16, 5, dtype=self.dtype), act, name="c3")(x, train)
    self.sow("intermediates", "C3", x)
    x = Pool(self.pool, 2, name="s4")(x)
    self.sow("intermediates", "S4", x)
    x = ConvBlock(functools.partial(Conv2D, 120, 5, dtype=self.dtype), act, name="c5")(x, train)
    self.sow("intermediates", "C5", x)
    x = Flatten()(x)
    x = act(Dense(84, dtype=self.dtype, name="f6")(x))
    self.sow("intermediates", "F6", x)
    x = Dense(self.num_classes, dtype=self.dtype, name="out")(x)
    return x.astype(jnp.float32)
