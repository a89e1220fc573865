"""A fully connected network: flatten -> (dense -> act)* -> logits.

The deep MLP of the layer-wise pre-training literature: 784-1000-1000-1000-10
with sigmoid units is the network of Bengio et al. (2007) and Vincent et al.
(2008) on MNIST-sized images. Parameters for 28x28x1 input and the default
widths: 785,000 + 1,001,000 + 1,001,000 + 10,010 = 2,797,010.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import Dense, Flatten, activation, check_images
from cnn_jax.models.registry import MODELS


@MODELS.register("mlp")
class MLP(nn.Module):
  """Attributes:
  hidden: the hidden layers' widths, named dense1, dense2, ... (sown as fc1, fc2, ...).
  activation: activation name (sigmoid as in the pre-training papers).
  dropout: dropout rate before each dense layer (needs a 'dropout' rng in training).
  """

  num_classes: int = 10
  hidden: Sequence[int] = (1000, 1000, 1000)
  activation: str = "sigmoid"
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "MLP")
    x = Flatten()(x.astype(self.dtype))
    act = activation(self.activation)
    for i, features in enumerate(self.hidden):
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = act(Dense(features, dtype=self.dtype, name=f"dense{i + 1}")(x))
      self.sow("intermediates", f"fc{i + 1}", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return Dense(self.num_classes, dtype=self.dtype, name="output")(x).astype(jnp.float32)
