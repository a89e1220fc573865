"""ResNets (He et al. 2016): torchvision's ImageNet ResNet-18/34/50/101/152 and the
paper's CIFAR ResNet-20/32/56.

ImageNet form (torchvision, "ResNet v1.5"): a 7x7/2 conv + 3x3/2 max pool stem,
four stages of basic (two 3x3) or bottleneck (1x1 -> 3x3 -> 1x1, x4 expansion)
blocks with 64/128/256/512 base widths, the stride of a downsampling bottleneck
on its 3x3 conv (v1.5; the paper's v1 put it on the first 1x1), projection
shortcuts (1x1 conv + BN) where the shape changes, convs without bias, BatchNorm
(eps 1e-5, PyTorch momentum 0.1), global average pooling and one dense layer.
Parameters at 1,000 classes and 3 channels equal torchvision's:
resnet18 11,689,512 · resnet34 21,797,672 · resnet50 25,557,032 ·
resnet101 44,549,160 · resnet152 60,192,808.

Small inputs: `stem="cifar"` replaces the stem by one 3x3/1 conv and no max pool
(as in most CIFAR ResNet-18 code), so a 28x28 or 32x32 image keeps 28/32 -> 4
pixels at stage 4 instead of 1; the first conv then has 3*3*C*64 instead of
7*7*C*64 weights. The default `stem="imagenet"` is torchvision's network and
runs on any size (a 28x28 input ends as 1x1 at stage 4).

CIFAR form (He et al. 2016, section 4.2): a 3x3 conv with 16 kernels, three
stages of n basic blocks (16/32/64 kernels, depth 6n+2) and "option A"
parameter-free shortcuts: subsample by 2 and zero-pad the new channels.
ResNet-20 has 269,722 parameters at 10 classes.

Intermediate features: `stem`, `layer1` ... `layer4` (stage outputs) and
`pooled` (`[B, C]` before the classifier).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import (
    BatchNorm, ConvBlock, Conv2D, Dense, GlobalAvgPool, ModuleDef, Pool, activation, check_images,
)
from cnn_jax.models.receptive_field import LayerSpec, check_input_size
from cnn_jax.models.registry import MODELS

# torchvision's init for ResNet convs: kaiming_normal_(mode="fan_out", nonlinearity="relu").
KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
STEMS = ("imagenet", "cifar")


def _shortcut(x: jax.Array, features: int, strides: int, kind: str, conv: ModuleDef,
              norm: ModuleDef, train: bool) -> jax.Array:
  """Identity, or (when the shape changes) a 1x1 projection or option A zero-padding."""
  if x.shape[-1] == features and strides == 1:
    return x
  if kind == "projection":
    block = ConvBlock(functools.partial(conv, features, 1, strides=strides), "identity", norm,
                      name="downsample")
    return block(x, train)
  if kind == "pad":
    x = x[:, ::strides, ::strides, :]
    extra = features - x.shape[-1]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
  raise ValueError(f"Unknown shortcut {kind!r}. Known shortcuts: pad (option A), projection.")


class BasicBlock(nn.Module):
  """Two 3x3 convs (stride on the first) + shortcut: `[B, H, W, C] -> [B, H/s, W/s, features]`."""

  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]
  shortcut: str = "projection"
  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv3x3 = functools.partial(self.conv, self.features, 3, padding=1)
    y = ConvBlock(functools.partial(conv3x3, strides=self.strides), self.act, self.norm,
                  name="conv1")(x, train)
    y = ConvBlock(conv3x3, "identity", self.norm, name="conv2")(y, train)
    r = _shortcut(x, self.features, self.strides, self.shortcut, self.conv, self.norm, train)
    return self.act(y + r)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride here: v1.5) -> 1x1 (x4 kernels) + shortcut."""

  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]
  shortcut: str = "projection"
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    out = self.features * self.expansion
    y = ConvBlock(functools.partial(self.conv, self.features, 1), self.act, self.norm,
                  name="conv1")(x, train)
    y = ConvBlock(functools.partial(self.conv, self.features, 3, strides=self.strides, padding=1),
                  self.act, self.norm, name="conv2")(y, train)
    y = ConvBlock(functools.partial(self.conv, out, 1), "identity", self.norm,
                  name="conv3")(y, train)
    r = _shortcut(x, out, self.strides, self.shortcut, self.conv, self.norm, train)
    return self.act(y + r)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _stage_specs(stage_widths: Sequence[int], stage_sizes: Sequence[int], block: str,
                 in_features: int, projection: bool) -> list[LayerSpec]:
  """The main path (largest receptive field) through the stages, one row per conv."""
  specs = []
  expansion = BLOCKS[block].expansion
  for i, (width, n) in enumerate(zip(stage_widths, stage_sizes)):
    for j in range(n):
      s = 2 if i > 0 and j == 0 else 1
      name = f"layer{i + 1}_{j}"
      if block == "basic":
        specs += [LayerSpec(f"{name}/conv1", kernel=3, stride=s, padding=1),
                  LayerSpec(f"{name}/conv2", kernel=3, padding=1)]
      else:
        specs += [LayerSpec(f"{name}/conv1"),
                  LayerSpec(f"{name}/conv2", kernel=3, stride=s, padding=1),
                  LayerSpec(f"{name}/conv3")]
      if j == n - 1:
        specs[-1] = dataclasses.replace(specs[-1], feature=f"layer{i + 1}")
      if projection and (s != 1 or in_features != width * expansion):
        specs.append(LayerSpec(f"{name}/downsample", "shortcut", kernel=1, stride=s))
      in_features = width * expansion
  return specs


class ResNet(nn.Module):
  """torchvision's ResNet. Input `[B, H, W, C]` -> logits `[B, num_classes]`.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block: 'basic' or 'bottleneck'.
    num_classes: output classes.
    stem: 'imagenet' (7x7/2 conv + 3x3/2 max pool) or 'cifar' (3x3/1 conv, no pool).
    activation: activation name (ReLU in the paper).
    width: kernels of the stem and the first stage (64).
    dtype: compute dtype; parameters stay float32.
  """

  stage_sizes: Sequence[int]
  block: str
  num_classes: int = 1000
  stem: str = "imagenet"
  activation: str = "relu"
  width: int = 64
  dtype: Any = jnp.float32
  axis_name: str | None = None  # pmap: BatchNorm statistics over this axis

  def layer_specs(self) -> list[LayerSpec]:
    if self.stem not in STEMS:
      raise ValueError(f"Unknown stem {self.stem!r}. Known stems: {', '.join(STEMS)}.")
    if self.block not in BLOCKS:
      raise ValueError(f"Unknown block {self.block!r}. Known blocks: {', '.join(BLOCKS)}.")
    if self.stem == "imagenet":
      specs = [LayerSpec("conv1", kernel=7, stride=2, padding=3),
               LayerSpec("maxpool", "maxpool", 3, 2, 1, feature="stem")]
    else:
      specs = [LayerSpec("conv1", kernel=3, stride=1, padding=1, feature="stem")]
    widths = [self.width * 2**i for i in range(len(self.stage_sizes))]
    specs += _stage_specs(widths, self.stage_sizes, self.block, self.width, projection=True)
    return specs + [LayerSpec("avgpool", "global", feature="pooled"), LayerSpec("fc", "dense")]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    name = type(self).__name__
    check_images(x, name)
    check_input_size(self.layer_specs(), x, name, "")
    x = x.astype(self.dtype)
    act = activation(self.activation)
    conv = functools.partial(Conv2D, use_bias=False, dtype=self.dtype, kernel_init=KAIMING_FAN_OUT)
    norm = functools.partial(BatchNorm, dtype=self.dtype, axis_name=self.axis_name)
    if self.stem == "imagenet":
      x = ConvBlock(functools.partial(conv, self.width, 7, strides=2, padding=3), act, norm,
                    name="conv1")(x, train)
      x = Pool("max", 3, 2, padding=1, name="maxpool")(x)
    else:
      x = ConvBlock(functools.partial(conv, self.width, 3, padding=1), act, norm,
                    name="conv1")(x, train)
    self.sow("intermediates", "stem", x)
    block = BLOCKS[self.block]
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        strides = 2 if i > 0 and j == 0 else 1
        x = block(self.width * 2**i, strides, conv, norm, act, name=f"layer{i + 1}_{j}")(x, train)
      self.sow("intermediates", f"layer{i + 1}", x)
    x = GlobalAvgPool(name="avgpool")(x)
    self.sow("intermediates", "pooled", x)
    x = Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return x.astype(jnp.float32)


@MODELS.register("resnet18")
class ResNet18(ResNet):
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = "basic"


@MODELS.register("resnet34")
class ResNet34(ResNet):
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = "basic"


@MODELS.register("resnet50")
class ResNet50(ResNet):
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = "bottleneck"


@MODELS.register("resnet101")
class ResNet101(ResNet):
  stage_sizes: Sequence[int] = (3, 4, 23, 3)
  block: str = "bottleneck"


@MODELS.register("resnet152")
class ResNet152(ResNet):
  stage_sizes: Sequence[int] = (3, 8, 36, 3)
  block: str = "bottleneck"


class CifarResNet(nn.Module):
  """He et al.'s CIFAR ResNet of depth 6n+2. Input `[B, H, W, C]` (32x32 in the paper;
  any size works) -> logits `[B, num_classes]`.

  Attributes:
    depth: 20, 32, 44, 56, 110, ... (6n+2).
    shortcut: 'pad' (option A: parameter-free, the paper's CIFAR choice) or
      'projection' (option B: 1x1 conv + BN where the shape changes).
  """

  depth: int
  num_classes: int = 10
  shortcut: str = "pad"
  activation: str = "relu"
  width: int = 16
  dtype: Any = jnp.float32
  axis_name: str | None = None  # pmap: BatchNorm statistics over this axis

  @property
  def blocks_per_stage(self) -> int:
    if (self.depth - 2) % 6 or self.depth < 8:
      raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {self.depth}.")
    return (self.depth - 2) // 6

  def layer_specs(self) -> list[LayerSpec]:
    n = self.blocks_per_stage
    specs = [LayerSpec("conv1", kernel=3, padding=1, feature="stem")]
    specs += _stage_specs([self.width * 2**i for i in range(3)], [n] * 3, "basic", self.width,
                          projection=self.shortcut == "projection")
    return specs + [LayerSpec("avgpool", "global", feature="pooled"), LayerSpec("fc", "dense")]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    name = type(self).__name__
    check_images(x, name)
    check_input_size(self.layer_specs(), x, name, "")
    x = x.astype(self.dtype)
    act = activation(self.activation)
    conv = functools.partial(Conv2D, use_bias=False, dtype=self.dtype, kernel_init=KAIMING_FAN_OUT)
    norm = functools.partial(BatchNorm, dtype=self.dtype, axis_name=self.axis_name)
    x = ConvBlock(functools.partial(conv, self.width, 3, padding=1), act, norm,
                  name="conv1")(x, train)
    self.sow("intermediates", "stem", x)
    for i in range(3):
      for j in range(self.blocks_per_stage):
        strides = 2 if i > 0 and j == 0 else 1
        x = BasicBlock(self.width * 2**i, strides, conv, norm, act, shortcut=self.shortcut,
                       name=f"layer{i + 1}_{j}")(x, train)
      self.sow("intermediates", f"layer{i + 1}", x)
    x = GlobalAvgPool(name="avgpool")(x)
    self.sow("intermediates", "pooled", x)
    x = Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return x.astype(jnp.float32)


@MODELS.register("resnet20")
class ResNet20(CifarResNet):
  depth: int = 20


@MODELS.register("resnet32")
class ResNet32(CifarResNet):
  depth: int = 32


@MODELS.register("resnet56")
class ResNet56(CifarResNet):
  depth: int = 56
