"""One topology, three connectivities: what local connectivity and parameter sharing buy.

The lecture says convolution works because each unit sees a small neighbourhood
(local connectivity) and every position uses the same kernel (parameter sharing).
`SharingNet` keeps the depth and the units per layer fixed and takes the two away
one at a time (`connectivity`):

  conv   `Conv2D`: local and shared.
  local  `LocallyConnected2D`: the same geometry (kernel, padding, output maps), but
         every output position has its own kernel: local, not shared.
  dense  `Dense`: every unit sees the whole input: neither local nor shared.

conv and local layers are followed by the activation and 2x2 stride-2 pooling. A
dense layer is as wide as the corresponding conv layer's *pooled* output and is not
pooled (Fashion-MNIST, 5x5 VALID: 12*12*16 = 2,304 units, then 4*4*32 = 512), so all
three variants have the same number of units per layer. Dense layers as wide as the
conv outputs before pooling (24*24*16, then 8*8*32, pooled in between) would take
about 12M parameters.

Parameters (the layer modules are named `layer1`, `layer2`, `output` in every variant,
so the three trees line up), with k the kernel size and C -> F a layer's channels:
  conv:  k*k*C*F + F per layer;
  local: H'*W'*(k*k*C*F + F) per layer (H' x W' its output before pooling);
  dense: in*out + out per layer.
Intermediate features are sown as `hidden1`, `hidden2` (after pooling, or after the
activation of a dense layer); not as `layer1`, `layer2`: with `capture_intermediates`
(`receptive_field.report`, `experiments.inspect`) every module's output is stored in the
same collection under the module's name, and the two would collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.layers import (
  Conv2D,
  Dense,
  Flatten,
  LocallyConnected2D,
  Pool,
  activation,
  check_images,
)
from cnn_jax.models.receptive_field import LayerSpec, check_input_size, walk
from cnn_jax.models.registry import MODELS

CONNECTIVITIES = ("conv", "local", "dense")
PADDINGS = {"VALID": 0, "SAME": "SAME"}  # as `LayerSpec` writes them


@MODELS.register("sharing_net")
class SharingNet(nn.Module):
  """(layer -> act -> [pool]) * len(features) -> flatten -> logits, layer set by `connectivity`.

  Attributes:
    num_classes: output classes.
    connectivity: 'conv', 'local' or 'dense' (see the module docstring).
    features: output maps of each conv/local layer, e.g. (16, 32); dense layers get
      the conv layer's pooled unit count instead.
    kernel_size: square kernel of every conv/local layer.
    padding: 'VALID' or 'SAME'.
    activation: activation name.
    pool: 'max' or 'avg' (2x2, stride 2) after every conv/local layer.
    dtype: compute dtype; parameters stay float32.
  """

  num_classes: int = 10
  connectivity: str = "conv"
  features: Sequence[int] = (16, 32)
  kernel_size: int = 5
  padding: str = "VALID"
  activation: str = "relu"
  pool: str = "max"
  dtype: Any = jnp.float32

  def _check(self) -> None:
    if self.connectivity not in CONNECTIVITIES:
      raise ConfigError(
          f"Unknown connectivity {self.connectivity!r}. Choices: {', '.join(CONNECTIVITIES)}."
      )
    if str(self.padding).upper() not in PADDINGS:
      raise ConfigError(f"padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}.")

  def conv_specs(self) -> list[LayerSpec]:
    """The conv variant's layers and pools: the geometry every variant is sized by."""
    specs = []
    for i in range(1, len(self.features) + 1):
      specs.append(LayerSpec(
          f"layer{i}", kernel=self.kernel_size, padding=PADDINGS[str(self.padding).upper()]
      ))
      specs.append(LayerSpec(f"pool{i}", f"{self.pool}pool", 2, 2, feature=f"hidden{i}"))
    return specs

  def layer_specs(self) -> list[LayerSpec]:
    self._check()
    if self.connectivity == "dense":
      specs = [LayerSpec(f"layer{i}", "dense", feature=f"hidden{i}")
               for i in range(1, len(self.features) + 1)]
    else:
      specs = self.conv_specs()
    return specs + [LayerSpec("output", "dense")]

  def dense_widths(self, height: int, width: int) -> list[int]:
    """Units of each conv layer's pooled output for a `height x width` input."""
    pooled = [
        [r.size for r in walk(self.conv_specs(), n) if r.spec.kind.endswith("pool")]
        for n in (height, width)
    ]
    return [h * w * f for h, w, f in zip(*pooled, self.features)]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, "SharingNet")
    self._check()
    check_input_size(
        self.conv_specs(), x, "SharingNet",
        "Use a smaller kernel_size or padding='SAME' (configs/parameter_sharing_digits.py).",
    )
    x = x.astype(self.dtype)
    act = activation(self.activation)
    padding = str(self.padding).upper()
    if self.connectivity == "dense":
      widths = self.dense_widths(x.shape[1], x.shape[2])
      x = Flatten()(x)
      for i, units in enumerate(widths, start=1):
        x = act(Dense(units, dtype=self.dtype, name=f"layer{i}")(x))
        self.sow("intermediates", f"hidden{i}", x)
    else:
      layer = Conv2D if self.connectivity == "conv" else LocallyConnected2D
      for i, features in enumerate(self.features, start=1):
        x = act(layer(features, self.kernel_size, padding=padding, dtype=self.dtype,
                      name=f"layer{i}")(x))
        x = Pool(self.pool, 2, name=f"pool{i}")(x)
        self.sow("intermediates", f"hidden{i}", x)
    x = Flatten()(x)
    x = Dense(self.num_classes, dtype=self.dtype, name="output")(x)
    return x.astype(jnp.float32)
