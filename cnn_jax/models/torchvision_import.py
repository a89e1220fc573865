"""torchvision state dicts -> our variables, for the models that are torchvision's networks.

`resnet18` ... `resnet152`, `vgg11` ... `vgg19` (with and without `_bn`), `alexnet` and
`googlenet` are torchvision's networks layer for layer (their parameter counts are
equal), so a state dict maps onto `{"params", "batch_stats"}` one array at a time:

* conv weights `[O, I, kh, kw]` (OIHW) -> kernels `[kh, kw, I, O]` (HWIO);
* linear weights `[out, in]` -> dense kernels `[in, out]`; the first linear layer
  after a flatten (AlexNet's and VGG's fc6, GoogLeNet's auxiliary fc1) also has its
  inputs reordered, since torchvision flattens `[C, H, W]` and we flatten `[H, W, C]`;
* BatchNorm `weight`, `bias` -> params `scale`, `bias`; `running_mean`, `running_var` ->
  batch_stats `mean`, `var` (`num_batches_tracked` is unused: both use a fixed momentum).

`num_classes` comes from the state dict's last layer, and GoogLeNet's auxiliary heads
(`aux_logits`) are imported when the state dict has them (`googlenet(weights=None)` and
torchvision's pretrained file do; the pretrained file's heads are untrained).
GoogLeNet's `transform_input` is a constructor flag, not in the state dict: torchvision
sets it with its pretrained weights, which re-scales ImageNet-normalised pixels to
`(x - 0.5) / 0.5` per channel; our GoogLeNet has no such step (it computes what
`transform_input=False` does), so feed it pixels normalised that way.

Reading a `.pth` file needs PyTorch (`pip install -e '.[torch]'`); it is imported only
inside `load_state_dict`, and the conversion works on NumPy arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnn_jax.errors import ConfigError
from cnn_jax.models import create_model
from cnn_jax.models.alexnet import CONVS as ALEXNET_CONVS
from cnn_jax.models.googlenet import INCEPTION
from cnn_jax.models.vgg import CONVS_PER_BLOCK

INSTALL_HINT = "pip install -e '.[torch]'"


@dataclasses.dataclass(frozen=True)
class Layer:
  """One torchvision layer and the module of ours that receives its arrays.

  kind: 'conv' (weight [+ bias]), 'bn' (BatchNorm) or 'dense' (weight + bias).
  flattened: `(C, H, W)` of the feature map a dense layer's input was flattened from.
  """

  ours: str  # our module path, '/'-separated: 'layer1_0/conv1/conv'
  theirs: str  # torchvision's prefix: 'layer1.0.conv1'
  kind: str
  flattened: tuple[int, int, int] | None = None


def _block(ours: str, conv: str, bn: str | None = None) -> list[Layer]:
  """A `ConvBlock`: its conv, and its BatchNorm when it has one."""
  layers = [Layer(f"{ours}/conv", conv, "conv")]
  return layers + ([Layer(f"{ours}/norm/bn", bn, "bn")] if bn else [])


def _resnet(model) -> list[Layer]:
  layers = _block("conv1", "conv1", "bn1")
  convs = 2 if model.block == "basic" else 3
  for i, n in enumerate(model.stage_sizes, start=1):
    for j in range(n):
      ours, theirs = f"layer{i}_{j}", f"layer{i}.{j}"
      for k in range(1, convs + 1):
        layers += _block(f"{ours}/conv{k}", f"{theirs}.conv{k}", f"{theirs}.bn{k}")
      if j == 0 and (i > 1 or model.block == "bottleneck"):  # the shape changes: projection
        layers += _block(f"{ours}/downsample", f"{theirs}.downsample.0", f"{theirs}.downsample.1")
  return layers + [Layer("fc", "fc", "dense")]


def _vgg(model) -> list[Layer]:
  layers, index = [], 0  # torchvision's `features`: conv, [bn], relu per conv; a pool per block
  for b, n in enumerate(CONVS_PER_BLOCK[model.depth], start=1):
    for i in range(1, n + 1):
      bn = f"features.{index + 1}" if model.batch_norm else None
      layers += _block(f"block{b}_conv{i}", f"features.{index}", bn)
      index += 3 if model.batch_norm else 2
    index += 1
  return layers + [  # `classifier`: linear, relu, dropout, linear, relu, dropout, linear
      Layer("dense1", "classifier.0", "dense", flattened=(512, 7, 7)),
      Layer("dense2", "classifier.3", "dense"),
      Layer("output", "classifier.6", "dense"),
  ]


def _alexnet(model) -> list[Layer]:
  del model
  layers, index = [], 0  # torchvision's `features`: conv, relu, [pool] per conv
  for i, (*_, pool) in enumerate(ALEXNET_CONVS, start=1):
    layers += _block(f"block{i}_conv", f"features.{index}")
    index += 3 if pool else 2
  return layers + [  # `classifier`: dropout, linear, relu, dropout, linear, relu, linear
      Layer("dense1", "classifier.1", "dense", flattened=(256, 6, 6)),
      Layer("dense2", "classifier.4", "dense"),
      Layer("output", "classifier.6", "dense"),
  ]


# Our inception branch -> torchvision's (`branch2`, `branch3` are Sequentials of two
# BasicConv2d; `branch4` is a max pool, then a BasicConv2d).
INCEPTION_BRANCHES = {
    "branch1": "branch1", "branch2a": "branch2.0", "branch2b": "branch2.1",
    "branch3a": "branch3.0", "branch3b": "branch3.1", "branch4": "branch4.1",
}


def _googlenet(model) -> list[Layer]:
  layers = []
  for name in ("conv1", "conv2", "conv3"):
    layers += _block(name, f"{name}.conv", f"{name}.bn")
  for key in INCEPTION:
    for ours, theirs in INCEPTION_BRANCHES.items():
      prefix = f"inception{key}.{theirs}"
      layers += _block(f"inception{key}/{ours}", f"{prefix}.conv", f"{prefix}.bn")
  if model.aux_logits:
    for aux in ("aux1", "aux2"):
      layers += _block(f"{aux}/conv", f"{aux}.conv.conv", f"{aux}.conv.bn")
      layers += [Layer(f"{aux}/fc1", f"{aux}.fc1", "dense", flattened=(128, 4, 4)),
                 Layer(f"{aux}/fc2", f"{aux}.fc2", "dense")]
  return layers + [Layer("fc", "fc", "dense")]


@dataclasses.dataclass(frozen=True)
class Family:
  layers: Callable[[Any], list[Layer]]
  head: str  # the last layer's weight: its rows are the classes


RESNET = Family(_resnet, "fc.weight")
VGG = Family(_vgg, "classifier.6.weight")
TORCHVISION_MODELS: dict[str, Family] = {
    **{f"resnet{d}": RESNET for d in (18, 34, 50, 101, 152)},
    **{f"vgg{d}{bn}": VGG for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "alexnet": Family(_alexnet, "classifier.6.weight"),
    "googlenet": Family(_googlenet, "fc.weight"),
}


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The arrays of a torchvision checkpoint (`torch.save(model.state_dict(), path)`).

  Also accepted: a dict holding the state dict under 'model' or 'state_dict' (training
  scripts' checkpoints) and keys prefixed 'module.' (DataParallel).
  """
  if not os.path.isfile(path):
    raise ConfigError(f"Checkpoint {path} not found: --checkpoint names a .pth file.")
  try:
    import torch  # an optional extra: only this function needs it
  except ImportError:
    raise ConfigError(f"Reading {path} needs PyTorch, an optional extra: {INSTALL_HINT}.") from None
  try:
    with warnings.catch_warnings():  # e.g. about pickle protocols; the error says what to do
      warnings.simplefilter("ignore")
      loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 - any unreadable file is one message
    reason = " ".join(str(e).split())[:120]
    raise ConfigError(
        f"Cannot read {path} with torch.load(weights_only=True) ({type(e).__name__}: {reason}). "
        "Save the weights with torch.save(model.state_dict(), path)."
    ) from None
  for key in ("model", "state_dict"):
    if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
      loaded = loaded[key]
  if not isinstance(loaded, Mapping) or not all(torch.is_tensor(v) for v in loaded.values()):
    raise ConfigError(
        f"{path} holds a {type(loaded).__name__}, not a state dict of tensors; save one with "
        "torch.save(model.state_dict(), path)."
    )
  if loaded and all(k.startswith("module.") for k in loaded):
    loaded = {k[len("module."):]: v for k, v in loaded.items()}
  return {k: v.detach().to("cpu", torch.float32).numpy() for k, v in loaded.items()}


def family(name: str) -> Family:
  """How torchvision lays out the model we register as `name`."""
  if name not in TORCHVISION_MODELS:
    raise ConfigError(
        f"Cannot import torchvision weights into {name!r}. Models with torchvision's layout: "
        f"{', '.join(TORCHVISION_MODELS)}."
    )
  return TORCHVISION_MODELS[name]


def model_options(name: str, state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Our model's options that the state dict decides: `num_classes`, GoogLeNet's `aux_logits`."""
  head = family(name).head
  if head not in state_dict or np.ndim(state_dict[head]) != 2:
    raise ConfigError(
        f"The state dict does not fit torchvision's {name}: it has no 2-D {head} (the "
        f"classifier). Its first keys: {', '.join(list(state_dict)[:3]) or 'none'}."
    )
  options = {"num_classes": int(np.shape(state_dict[head])[0])}
  if name == "googlenet":
    options["aux_logits"] = "aux1.fc2.weight" in state_dict
  return options


def _arrays(layer: Layer) -> list[tuple[str, str, str]]:
  """(collection, our leaf, their suffix) of each array a layer holds."""
  if layer.kind == "bn":
    return [("params", "scale", "weight"), ("params", "bias", "bias"),
            ("batch_stats", "mean", "running_mean"), ("batch_stats", "var", "running_var")]
  return [("params", "kernel", "weight"), ("params", "bias", "bias")]


def _to_ours(layer: Layer, leaf: str, array: np.ndarray) -> np.ndarray:
  if leaf != "kernel":
    return array
  if layer.kind == "conv":
    return array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if layer.flattened:  # inputs in (c, h, w) order -> (h, w, c) order
    c, h, w = layer.flattened
    return array.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)
  return array.T


def _their_shape(layer: Layer, leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The torchvision shape that becomes our `shape`."""
  if leaf != "kernel":
    return shape
  if layer.kind == "conv":
    kh, kw, i, o = shape
    return (o, i, kh, kw)
  return shape[::-1]


def expected_shapes(model) -> dict[tuple[str, ...], tuple[int, ...]]:
  """(collection, *module path, leaf) -> shape of each of `model`'s variables at 224x224x3."""
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def convert_state_dict(
    name: str, state_dict: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
  """`(model options, {"params", "batch_stats"})` of our `name` from torchvision's state dict.

  Every array of the state dict must find its place and fit its shape: a missing,
  misshapen or left-over key is a ConfigError naming the first one (weights of another
  architecture, e.g. resnet18's for resnet34, fail here and not silently later).
  """
  options = model_options(name, state_dict)
  model = create_model(name, **options)
  expected = expected_shapes(model)
  fits = f"The state dict does not fit torchvision's {name}"
  converted: dict[tuple[str, ...], np.ndarray] = {}
  used = set()
  for layer in family(name).layers(model):
    for collection, leaf, suffix in _arrays(layer):
      ours = (collection, *layer.ours.split("/"), leaf)
      if ours not in expected:
        if (layer.kind, leaf) == ("conv", "bias"):  # convs followed by BatchNorm have none
          continue
        raise RuntimeError(f"torchvision import of {name}: no variable {'/'.join(ours)} here.")
      key = f"{layer.theirs}.{suffix}"
      want = _their_shape(layer, leaf, expected[ours])
      if key not in state_dict:
        raise ConfigError(f"{fits}: it has no {key} (shape {want}). Is it another model's?")
      array = np.asarray(state_dict[key], np.float32)
      if array.shape != want:
        raise ConfigError(
            f"{fits}: {key} has shape {array.shape}, {name} needs {want}. Is it another model's?"
        )
      converted[ours] = _to_ours(layer, leaf, array)
      used.add(key)
  unused = [k for k in state_dict if k not in used and not k.endswith(".num_batches_tracked")]
  if unused:
    raise ConfigError(
        f"{fits}: {unused[0]} (shape {tuple(np.shape(state_dict[unused[0]]))}) has no place "
        f"in {name}{f' (nor {len(unused) - 1} more keys)' if len(unused) > 1 else ''}. "
        "Is it another model's?"
    )
  missing = sorted(set(expected) - set(converted))
  if missing:  # the layer lists above miss a module of ours: a bug here, not in the input
    raise RuntimeError(f"torchvision import of {name} fills no value for {'/'.join(missing[0])}.")
  variables = traverse_util.unflatten_dict(converted)
  variables.setdefault("batch_stats", {})
  return options, variables


def import_checkpoint(
    name: str, checkpoint: str | os.PathLike
) -> tuple[dict[str, Any], dict[str, Any]]:
  """`(model options, variables)` of our `name` from a torchvision `.pth` state dict."""
  family(name)  # an unknown name fails before a large file is read
  return convert_state_dict(name, load_state_dict(checkpoint))
