"""Frozen activations of a named layer of a trained model (feature learning, probed).

Models sow named features into the `intermediates` collection (LeNet-5: C1, S2,
C3, S4, C5, F6), so the probe reaches any layer without a second model
definition. The model comes either from a training workdir (`config.json` plus
the latest checkpoint, read through `cnn_jax.run.Run`) or from memory
(`model=..., variables=...`). Pixels are preprocessed exactly as in training:
`Normalization` with the training split's mean/std and the config's image size.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.data import Normalization
from cnn_jax.errors import ConfigError
from cnn_jax.features.base import EXTRACTORS, FeatureFn, require_train_images
from cnn_jax.run import Run


def layer_shapes(model: nn.Module, variables: dict[str, Any], input_shape) -> dict[str, tuple]:
  """Name -> shape `[1, ...]` of every sown intermediate feature."""
  _, state = jax.eval_shape(
      functools.partial(model.apply, train=False, mutable=["intermediates"]),
      variables, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32),
  )
  return {k: v[0].shape for k, v in state["intermediates"].items()}


def cnn_features(
    images: jax.Array, *, model: nn.Module, variables: dict[str, Any],
    normalize: Normalization, layer: str,
) -> jax.Array:
  """`[B, H, W, C]` uint8 -> the flattened `layer` activations `[B, D]` (float32)."""
  _, state = model.apply(variables, normalize(images), train=False, mutable=["intermediates"])
  feats = state["intermediates"][layer][0]
  return feats.reshape(feats.shape[0], -1).astype(jnp.float32)


@EXTRACTORS.register("cnn")
def build_cnn(
    *,
    image_shape,
    train_images=None,
    workdir: str | None = None,
    layer: str = "F6",
    image_size: int = 0,
    model: nn.Module | None = None,
    variables: dict[str, Any] | None = None,
) -> FeatureFn:
  """Frozen `layer` of a trained model, from `workdir` or from `model` + `variables`.

  `image_size` (in-memory models only; a workdir's config sets it) resizes as in training.
  """
  if workdir:
    model, variables, config = Run(workdir).load_model()
    image_size = int(config.data.get("image_size", 0) or 0)
  elif model is None or variables is None:
    raise ConfigError(
        "The cnn extractor needs --workdir (a trained run of experiments.main) or an in-memory "
        "model and variables."
    )
  normalize = Normalization.from_images(require_train_images("cnn", train_images), image_size)
  size = image_size or image_shape[0]
  try:
    shapes = layer_shapes(model, variables, (size, size, image_shape[2]))
  except flax.errors.ScopeParamShapeError as e:  # e.g. an RGB model on grey images
    raise ConfigError(
        f"The model{f' of {workdir}' if workdir else ''} does not take these "
        f"{size}x{size}x{image_shape[2]} images: {str(e).split(' (https')[0]} Probe it on a "
        "data set with as many channels as the images it was trained on."
    ) from None
  if layer not in shapes:
    raise ConfigError(
        f"The model has no layer {layer!r}; its named features are: {', '.join(shapes)}."
    )
  variables = jax.tree.map(jnp.asarray, variables)
  return functools.partial(
      cnn_features, model=model, variables=variables, normalize=normalize, layer=layer
  )
