"""Models, found by name: `create_model("lenet5", num_classes=10)`.

Every model maps `[B, H, W, C]` images to `[B, num_classes]` logits with
`model.apply(variables, x, train=...)`, and sows its named intermediate features
into the `intermediates` collection (`mutable=["intermediates"]`) so probes and
visualisations can reach any layer without a second model definition.
"""

from __future__ import annotations

import inspect
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models.registry import MODELS
from cnn_jax.models import lenet as _lenet  # noqa: F401  (registers lenet5)
from cnn_jax.models import simple_cnn as _simple_cnn  # noqa: F401  (registers simple_cnn)
from cnn_jax.models import mlp as _mlp  # noqa: F401  (registers mlp)
from cnn_jax.models import sharing_net as _sharing_net  # noqa: F401  (registers sharing_net)
from cnn_jax.models import alexnet as _alexnet  # noqa: F401  (registers alexnet)
from cnn_jax.models import googlenet as _googlenet  # noqa: F401  (registers googlenet)
from cnn_jax.models import resnet as _resnet  # noqa: F401  (registers resnet18 ... resnet152, resnet20/32/56)
from cnn_jax.models import vgg as _vgg  # noqa: F401  (registers vgg11 ... vgg19, vgg11_bn ... vgg19_bn)
from cnn_jax.models import compact_resnet as _compact_resnet  # noqa: F401  (registers compact_resnet)


def create_model(name: str, **kwargs: Any) -> nn.Module:
  """Builds the model registered as `name` with keyword arguments from the config."""
  cls = MODELS.get(name)
  if isinstance(kwargs.get("dtype"), str):
    kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
  fields = {f for f in inspect.signature(cls).parameters if f not in ("parent", "name")}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ConfigError(
        f"Model {name!r} has no option(s) {', '.join(unknown)}. "
        f"Its options are: {', '.join(sorted(fields))}."
    )
  return cls(**kwargs)


def model_from_config(config, *, axis_name: str | None = None) -> nn.Module:
  """The model a training config describes: `config.model` (name + options), `config.dtype`.

  `axis_name`: the pmap axis BatchNorm averages its statistics over (models
  without BatchNorm ignore it).
  """
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  kwargs["dtype"] = config.dtype
  if axis_name and "axis_name" in inspect.signature(MODELS.get(config.model.name)).parameters:
    kwargs["axis_name"] = axis_name
  return create_model(config.model.name, **kwargs)


__all__ = ["MODELS", "create_model", "model_from_config"]
