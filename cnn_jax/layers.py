"""The lecture's building blocks as pure-function Flax Linen modules.

Images are NHWC: `[B, H, W, C]`. Every module is a pure function of its
parameters (`model.init` / `model.apply`); none keeps hidden state.

* `Conv2D`    - a 2-D convolution with any number of kernels (the lecture's
                "weighted sum of the input under a kernel", summed over all
                input channels). Like every deep-learning library it computes a
                cross-correlation: the kernel is not flipped.
* `Pool`      - max or average pooling.
* `Flatten`   - `[B, H, W, C] -> [B, H*W*C]`.
* `Dense`     - a fully connected layer.
* `activation(name)` - sigmoid / tanh / relu / ... chosen by name.
* `BatchNorm` - batch normalisation with an explicit `train` flag.
* `ConvBlock` - conv -> [norm] -> activation -> [pool], pieces passed in.
* `AdaptiveAvgPool`, `GlobalAvgPool`, `ceil_mode_padding` - PyTorch's adaptive
                pooling and ceil-mode pool sizes, for torchvision-exact AlexNet,
                VGG and GoogLeNet.

Parameter sharing is visible in the shapes: a `Conv2D` has `kh*kw*C_in*K + K`
parameters whatever the image size, where a dense layer on the same input and
output would need `(H*W*C_in) * (H'*W'*K)`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.registry import Registry

Array = jax.Array
Dtype = Any
IntOrPair = int | Sequence[int]
Padding = str | int | Sequence[tuple[int, int]]

ACTIVATIONS: Registry[Callable[[Array], Array]] = Registry("activation")
ACTIVATIONS.register("sigmoid")(nn.sigmoid)
ACTIVATIONS.register("tanh")(jnp.tanh)
ACTIVATIONS.register("relu")(nn.relu)
ACTIVATIONS.register("leaky_relu")(nn.leaky_relu)
ACTIVATIONS.register("elu")(nn.elu)
ACTIVATIONS.register("gelu")(nn.gelu)
ACTIVATIONS.register("identity")(lambda x: x)


def activation(name: str) -> Callable[[Array], Array]:
  """Returns the activation function registered as `name` (e.g. "relu")."""
  return ACTIVATIONS.get(name)


def _pair(v: IntOrPair, what: str) -> tuple[int, int]:
  if isinstance(v, int):
    pair = (v, v)
  else:
    pair = tuple(int(a) for a in v)
  if len(pair) != 2 or min(pair) < 1:
    raise ValueError(f"{what} must be a positive int or a pair of them, got {v!r}.")
  return pair  # type: ignore[return-value]


def _padding(padding: Padding) -> str | list[tuple[int, int]]:
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}.")
    return padding.upper()
  if isinstance(padding, int):
    return [(padding, padding), (padding, padding)]
  return [tuple(p) for p in padding]  # type: ignore[misc]


def check_images(x: Array, where: str) -> None:
  """Images must be a rank-4 NHWC batch; say how to fix anything else."""
  if x.ndim != 4:
    hint = ""
    if x.ndim == 3:
      hint = " For a single image use x[None]; for a grey batch [B, H, W] use x[..., None]."
    elif x.ndim == 2:
      hint = " For one grey image [H, W] use x[None, :, :, None]."
    raise ValueError(
        f"{where} expects an image batch of rank 4 [B, H, W, C], got shape {tuple(x.shape)} "
        f"(rank {x.ndim}).{hint}"
    )


class Conv2D(nn.Module):
  """2-D convolution (cross-correlation) with `features` kernels.

  Attributes:
    features: number of kernels = output channels.
    kernel_size: `k` or `(kh, kw)`.
    strides: `s` or `(sh, sw)`.
    padding: 'VALID', 'SAME', an int (same on every side) or `((top, bottom), (left, right))`.
    use_bias: add one bias per kernel.
    dtype: compute dtype (e.g. bfloat16); parameters stay `param_dtype`.

  Input `[B, H, W, C_in]`, output `[B, H', W', features]`. Parameters:
  `kernel [kh, kw, C_in, features]` (the same kernel slides over every position:
  parameter sharing) and `bias [features]`. Output channel `k` at `(i, j)` is
  `sum_{c, u, v} x[i*s+u, j*s+v, c] * kernel[u, v, c, k] + bias[k]`.
  """

  features: int
  kernel_size: IntOrPair
  strides: IntOrPair = 1
  padding: Padding = "VALID"
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    check_images(x, "Conv2D")
    kh, kw = _pair(self.kernel_size, "kernel_size")
    strides = _pair(self.strides, "strides")
    kernel = self.param(
        "kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype
    )
    bias = (
        self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        if self.use_bias
        else None
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=_padding(self.padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    if bias is not None:
      y = y + bias
    return y


class LocallyConnected2D(nn.Module):
  """A convolution WITHOUT parameter sharing: the same geometry as `Conv2D` (kernel size,
  strides, padding, `features` output channels), but every output position has its own
  kernel and bias (local connectivity kept, weight tying dropped).

  Output channel `k` at `(i, j)` is
  `sum_{c, u, v} x[i*s+u, j*s+v, c] * kernel[i, j, u, v, c, k] + bias[i, j, k]`;
  setting `kernel[i, j] = K` and `bias[i, j] = b` for every position gives `Conv2D` with
  kernel `K` and bias `b`, exactly.

  Parameters: `kernel [H', W', kh, kw, C_in, features]` and `bias [H', W', features]`, so
  `H' W' (kh kw C_in features + features)` in all — `H' W'` times the conv's
  `kh kw C_in features + features`. Computed as one batched einsum over the patches that
  `lax.conv_general_dilated_patches` extracts (no loop over positions).
  """

  features: int
  kernel_size: IntOrPair
  strides: IntOrPair = 1
  padding: Padding = "VALID"
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  # fan-in = kh kw C_in per position (the two position axes are batch axes of the init).
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal(batch_axis=(0, 1))
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    check_images(x, "LocallyConnected2D")
    kh, kw = _pair(self.kernel_size, "kernel_size")
    c = x.shape[-1]
    x = nn.dtypes.promote_dtype(x, dtype=self.dtype)[0]
    # [B, H', W', C kh kw], features ordered (c, u, v).
    patches = lax.conv_general_dilated_patches(
        x, (kh, kw), _pair(self.strides, "strides"), _padding(self.padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    b, ho, wo, _ = patches.shape
    patches = patches.reshape(b, ho, wo, c, kh, kw)
    kernel = self.param(
        "kernel", self.kernel_init, (ho, wo, kh, kw, c, self.features), self.param_dtype
    )
    bias = (
        self.param("bias", self.bias_init, (ho, wo, self.features), self.param_dtype)
        if self.use_bias
        else None
    )
    kernel, bias = nn.dtypes.promote_dtype(kernel, bias, dtype=self.dtype)
    y = jnp.einsum("bijcuv,ijuvck->bijk", patches, kernel)
    if bias is not None:
      y = y + bias
    return y


def _tiles(x: Array, window: tuple[int, int]) -> list[Array]:
  """The `kh*kw` strided views of `x`'s non-overlapping windows, pixel (i, j) of every
  window in view i*kw + j (row-major window order), cropped as a VALID pool crops."""
  kh, kw = window
  x = x[:, : x.shape[1] // kh * kh, : x.shape[2] // kw * kw]
  return [x[:, i::kh, j::kw] for i in range(kh) for j in range(kw)]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _tiled_max(x: Array, window: tuple[int, int]) -> Array:
  return functools.reduce(jnp.maximum, _tiles(x, window))


@_tiled_max.defjvp
def _tiled_max_jvp(window, primals, tangents):
  (x,), (dx,) = primals, tangents
  tiles = _tiles(x, window)
  y = functools.reduce(jnp.maximum, tiles)
  # Each window's derivative is its FIRST maximum's, in row-major order, as XLA's
  # select-and-scatter sends the gradient (`>=` keeps the earlier pixel); ties are common
  # (equal pixels of a flat background give equal conv outputs).
  taken, winners = jnp.zeros(y.shape, bool), []
  for tile in tiles[:-1]:
    wins = (tile == y) & ~taken
    winners.append(wins)
    taken = taken | wins
  winners.append(~taken)
  # The tangent's tiles by a reshape and a transpose (not strided slices): reverse mode
  # transposes these into one copy back, where slices would become kh*kw padded scatters.
  (kh, kw), (n, h, w, c) = window, dx.shape
  ho, wo = h // kh, w // kw
  dx_tiles = dx[:, : ho * kh, : wo * kw].reshape(n, ho, kh, wo, kw, c)
  dx_tiles = dx_tiles.transpose(2, 4, 0, 1, 3, 5).reshape(kh * kw, n, ho, wo, c)
  return y, jnp.where(jnp.stack(winners), dx_tiles, jnp.zeros((), dx.dtype)).sum(0)


def tiled_max_pool(x: Array, window: tuple[int, int]) -> Array:
  """Max pooling with stride = window and no padding (`nn.max_pool(x, window, window)`),
  as an element-wise max of the windows' `kh*kw` strided views.

  Same values and same gradients, bit for bit, as `flax.linen.max_pool` on the CPU
  (`tests/test_layers.py`), in forward and reverse mode; it avoids XLA:CPU's reduce-window
  and select-and-scatter, which are slow: ReLU + 2x2 pool of a `[128, 28, 28, 32]` batch,
  forward and backward, takes 2 ms this way against 56 ms on the 2-core CPU
  (`benchmarks/cpu_step_pieces.py`). `Pool('max')` uses it on the CPU when the windows
  do not overlap. A window holding a NaN may send its gradient elsewhere than XLA does
  (the loss is NaN then).
  """
  return _tiled_max(x, tuple(window))


class Pool(nn.Module):
  """Max or average pooling over `window` with `strides` (default: = window)."""

  kind: str = "max"
  window: IntOrPair = 2
  strides: IntOrPair | None = None
  padding: Padding = "VALID"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    check_images(x, "Pool")
    window = _pair(self.window, "window")
    strides = _pair(self.strides if self.strides is not None else self.window, "strides")
    padding = _padding(self.padding)
    if self.kind == "max":
      # The tiled formulation where it is measured faster (the CPU); GPUs and TPUs keep
      # XLA's reduce-window until a lease measures it there.
      tiled = window == strides and padding in ("VALID", [(0, 0), (0, 0)])
      if tiled and jax.default_backend() == "cpu":
        return tiled_max_pool(x, window)
      return nn.max_pool(x, window, strides, padding)
    if self.kind == "avg":
      # Average over the real pixels only, so padded borders are not darkened.
      return nn.avg_pool(x, window, strides, padding, count_include_pad=False)
    raise ValueError(f"Unknown pooling kind {self.kind!r}. Known pooling kinds: avg, max.")


class Flatten(nn.Module):
  """`[B, ...] -> [B, prod(...)]`: the bridge from feature maps to dense layers."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return x.reshape((x.shape[0], -1))


class Dense(nn.Module):
  """Fully connected layer `[B, D_in] -> [B, features]`: `x @ kernel + bias`."""

  features: int
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if x.ndim != 2:
      raise ValueError(
          f"Dense expects [B, D], got shape {tuple(x.shape)}; put a Flatten() in front of it."
      )
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), self.param_dtype)
    bias = (
        self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        if self.use_bias
        else None
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = x @ kernel
    if bias is not None:
      y = y + bias
    return y


class BatchNorm(nn.Module):
  """Batch normalisation with an explicit `train` flag.

  In training it normalises with the batch's statistics (averaged over
  `axis_name` when the batch is split across devices) and updates the running
  averages in the `batch_stats` collection; in evaluation it uses those averages.
  """

  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: str | None = None
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.momentum,
        epsilon=self.epsilon,
        axis_name=self.axis_name,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="bn",
    )(x)


ModuleDef = Callable[..., nn.Module]


class ConvBlock(nn.Module):
  """conv -> [norm] -> activation -> [pool], each piece passed in.

  The pieces are module constructors (classes or `functools.partial`s), as in
  flax's ResNet examples, so the block owns its children and their parameters
  nest under the block's name: `{"conv": ..., "norm": ...}`.

  Attributes:
    conv: makes a module `[B, H, W, C] -> [B, H', W', K]`, e.g. `partial(Conv2D, 6, 5)`.
    act: an activation function, or its name.
    norm: optional; makes a module called as `norm(x, train)`, e.g. `BatchNorm`.
    pool: optional; makes a pooling module, e.g. `partial(Pool, "max", 2)`.
  """

  conv: ModuleDef
  act: Callable[[Array], Array] | str = "relu"
  norm: ModuleDef | None = None
  pool: ModuleDef | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    x = self.conv(name="conv")(x)
    if self.norm is not None:
      x = self.norm(name="norm")(x, train)
    act = activation(self.act) if isinstance(self.act, str) else self.act
    x = act(x)
    if self.pool is not None:
      x = self.pool(name="pool")(x)
    return x


def adaptive_pool_matrix(size: int, output_size: int) -> jnp.ndarray:
  """`[output_size, size]` averaging weights of PyTorch's adaptive average pooling.

  Output bin `i` averages inputs `[floor(i*size/out), ceil((i+1)*size/out))`: bins
  tile the input evenly when `out` divides `size`, overlap by one pixel when it
  does not, and repeat pixels when `out > size` (torchvision's AlexNet/VGG on
  small inputs).
  """
  weights = [[0.0] * size for _ in range(output_size)]
  for i in range(output_size):
    start = (i * size) // output_size
    end = -((-(i + 1) * size) // output_size)
    for j in range(start, end):
      weights[i][j] = 1.0 / (end - start)
  return jnp.asarray(weights, jnp.float32)


class AdaptiveAvgPool(nn.Module):
  """Average pooling to a fixed `output_size`, whatever the input size (PyTorch's
  `AdaptiveAvgPool2d`): `[B, H, W, C] -> [B, oh, ow, C]`. An identity when the
  input already has that size (AlexNet's 6x6 / VGG's 7x7 at 224x224)."""

  output_size: IntOrPair

  @nn.compact
  def __call__(self, x: Array) -> Array:
    check_images(x, "AdaptiveAvgPool")
    oh, ow = _pair(self.output_size, "output_size")
    _, h, w, _ = x.shape
    if (h, w) == (oh, ow):
      return x
    if h % oh == 0 and w % ow == 0:
      window = (h // oh, w // ow)
      return nn.avg_pool(x, window, window)
    ph = adaptive_pool_matrix(h, oh).astype(x.dtype)
    pw = adaptive_pool_matrix(w, ow).astype(x.dtype)
    # An average, not a learned product: full precision, or a GPU's default TF32 dot
    # rounds it to about 1e-3 (the same bits on a CPU either way).
    return jnp.einsum("bhwc,ph,qw->bpqc", x, ph, pw, precision=lax.Precision.HIGHEST)


class GlobalAvgPool(nn.Module):
  """Mean over all positions: `[B, H, W, C] -> [B, C]` (ResNet's and GoogLeNet's head)."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    check_images(x, "GlobalAvgPool")
    return jnp.mean(x, axis=(1, 2))


def ceil_mode_padding(size: int, window: int, stride: int, padding: int = 0) -> tuple[int, int]:
  """(low, high) padding that makes a VALID pool match PyTorch's `ceil_mode=True`.

  PyTorch rounds the output size up, `ceil((size + 2p - k) / s) + 1`, but drops a
  last window that would start in the right padding; the extra right padding
  (filled with -inf by max pooling) makes room for that last partial window.
  """
  if window < stride:
    raise ValueError(f"ceil_mode_padding needs window >= stride, got {window} < {stride}.")
  out = -(-(size + 2 * padding - window) // stride) + 1
  if (out - 1) * stride >= size + padding:
    out -= 1
  if out < 1:
    raise ValueError(
        f"A {window}x{window} pool with stride {stride} and padding {padding} needs an input of "
        f"at least {max(window - 2 * padding, 1)} pixels, got {size}."
    )
  return padding, (out - 1) * stride + window - size - padding
