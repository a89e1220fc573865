"""Backpropagation through a CNN written out by hand, in NumPy (float64).

The lecture's point (MISSION items 4-8): a convolution is a weighted sum of the
input under a kernel, so a CNN is trained by the same backpropagation as a fully
connected network. This module makes that concrete. Every layer is a pair of
plain functions, `*_forward` (inputs -> output, plus whatever the backward pass
needs) and `*_backward` (the gradient of the loss w.r.t. the output -> the
gradients w.r.t. the inputs and the parameters). No JAX inside: the tests check
these hand-written gradients against `jax.grad` of the Flax models and against
finite differences, so each is an independent witness for the other.

Conventions are those of `cnn_jax.layers`: images are NHWC `[B, H, W, C]`,
conv kernels HWIO `[kh, kw, C_in, K]`, dense kernels `[D_in, D_out]`, and a
"convolution" is a cross-correlation (the kernel is not flipped):

    y[b, i, j, k] = sum_{u, v, c} xp[b, i*sh + u, j*sw + v, c] * kernel[u, v, c, k] + bias[k]

where `xp` is the zero-padded input.

* `conv2d_forward` / `conv2d_backward`      - any kernels, channels, stride, padding.
* `max_pool_*`, `avg_pool_*`                - window k, stride s, no padding.
* `flatten_*`, `dense_*`, `sigmoid_*`, `tanh_*`, `relu_*`, `pad_*`.
* `softmax_cross_entropy_*`                 - mean over the batch, integer labels
                                              (as `cnn_jax.train.steps.cross_entropy_loss`).
* `Network`                                 - chains layers; forward, then backprop from
                                              the loss back to the input.
* `lenet5(...)`                             - LeNet-5 (as `cnn_jax.models.lenet.LeNet5`) built
                                              from these pieces; its gradients come back in the
                                              Flax `params` pytree structure.
* `conv_as_dense_matrix`, `conv_backward_via_dense` - the lecture's point in code: a conv
                                              IS a dense layer whose (mostly zero) matrix
                                              repeats the kernel's weights; the gradient of a
                                              shared weight is the SUM over its copies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Pair = tuple[int, int]
PadSpec = str | int | Sequence[Sequence[int]]


# --------------------------------------------------------------------------------------------
# Helpers: strides and padding as `cnn_jax.layers.Conv2D` reads them.
# --------------------------------------------------------------------------------------------


def _pair(v: int | Sequence[int]) -> Pair:
  if isinstance(v, (int, np.integer)):
    return int(v), int(v)
  a, b = v
  return int(a), int(b)


def resolve_padding(padding: PadSpec, size: Pair, kernel: Pair, stride: Pair) -> tuple[Pair, Pair]:
  """`((top, bottom), (left, right))` zero rows/columns for a padding spec.

  'VALID' is no padding; an int pads every side by that much; explicit pairs are
  taken as they are. 'SAME' (XLA's rule, which Flax and TensorFlow use) pads so
  that the output has `ceil(size / stride)` pixels, splitting the padding evenly
  with the odd pixel at the bottom/right.
  """
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return (0, 0), (0, 0)
    if padding.upper() != "SAME":
      raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}.")
    pads = []
    for n, k, s in zip(size, kernel, stride):
      out = -(-n // s)
      total = max((out - 1) * s + k - n, 0)
      pads.append((total // 2, total - total // 2))
    return pads[0], pads[1]
  if isinstance(padding, (int, np.integer)):
    return (int(padding), int(padding)), (int(padding), int(padding))
  (t, b), (l, r) = padding
  return (int(t), int(b)), (int(l), int(r))


def conv_output_size(size: int, k: int, s: int, pad: Pair) -> int:
  """How many positions a window of `k` pixels with stride `s` takes on `size + pad` pixels."""
  return (size + pad[0] + pad[1] - k) // s + 1


# --------------------------------------------------------------------------------------------
# Convolution.
# --------------------------------------------------------------------------------------------


def _patches(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
  """`[B, Ho, Wo, kh, kw, C]`: the input patch under the kernel at every output position.

  This is "im2col": output (i, j) sees `xp[:, i*sh : i*sh+kh, j*sw : j*sw+kw, :]`.
  (A read-only view into `xp`; nothing is copied.)
  """
  windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
  windows = windows[:, ::sh, ::sw]  # [B, Ho, Wo, C, kh, kw]
  return windows.transpose(0, 1, 2, 4, 5, 3)


def conv2d_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    strides: int | Sequence[int] = 1,
    padding: PadSpec = "VALID",
) -> np.ndarray:
  """`y[b, i, j, k] = sum_{u, v, c} xp[b, i*sh+u, j*sw+v, c] * kernel[u, v, c, k] + bias[k]`.

  `x [B, H, W, C_in]`, `kernel [kh, kw, C_in, K]`, `bias [K]` -> `y [B, Ho, Wo, K]`.
  Each output is a weighted sum over a `kh x kw` patch of ALL input channels,
  one sum per kernel `k`; the same kernel is used at every position (sharing).
  """
  kh, kw = kernel.shape[:2]
  sh, sw = _pair(strides)
  pad_h, pad_w = resolve_padding(padding, x.shape[1:3], (kh, kw), (sh, sw))
  xp = np.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  y = np.einsum("bijuvc,uvck->bijk", _patches(xp, kh, kw, sh, sw), kernel, optimize=True)
  if bias is not None:
    y = y + bias
  return y


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    kernel: np.ndarray,
    strides: int | Sequence[int] = 1,
    padding: PadSpec = "VALID",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Gradients `(dx, dkernel, dbias)` of the loss, given `dy = dloss/dy [B, Ho, Wo, K]`.

  Read the forward formula as a fully connected layer and apply the chain rule:

  * `dkernel[u, v, c, k] = sum_{b, i, j} dy[b, i, j, k] * xp[b, i*sh+u, j*sw+v, c]`.
    The SAME weight was used at every position (i, j) of every image b, so its
    gradient is the SUM over all of them: the one thing that makes a conv's
    backprop differ from a dense layer's (see `conv_backward_via_dense`).
  * `dbias[k] = sum_{b, i, j} dy[b, i, j, k]`, for the same reason.
  * `dxp[b, i*sh+u, j*sw+v, c] += dy[b, i, j, k] * kernel[u, v, c, k]`: every output
    sends its gradient back to each input pixel it read, weighted by the weight
    that pixel was multiplied with ("col2im", a scatter-add). For stride 1 this
    is a full convolution of `dy` with the kernel flipped by 180 degrees; written
    as a scatter-add no flip appears explicitly. The padding's gradient is dropped.
  """
  kh, kw = kernel.shape[:2]
  sh, sw = _pair(strides)
  pad_h, pad_w = resolve_padding(padding, x.shape[1:3], (kh, kw), (sh, sw))
  xp = np.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  _, ho, wo, _ = dy.shape
  dkernel = np.einsum("bijuvc,bijk->uvck", _patches(xp, kh, kw, sh, sw), dy, optimize=True)
  dbias = dy.sum(axis=(0, 1, 2))
  dpatches = np.einsum("bijk,uvck->bijuvc", dy, kernel, optimize=True)
  dxp = np.zeros_like(xp)
  for u in range(kh):
    for v in range(kw):
      dxp[:, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw, :] += dpatches[
          :, :, :, u, v, :
      ]
  h, w = x.shape[1:3]
  dx = dxp[:, pad_h[0] : pad_h[0] + h, pad_w[0] : pad_w[0] + w, :]
  return dx, dkernel, dbias


# --------------------------------------------------------------------------------------------
# Pooling (no padding, as every pool in LeNet-5 and SimpleCNN).
# --------------------------------------------------------------------------------------------


def _pool_windows(x: np.ndarray, k: Pair, s: Pair) -> np.ndarray:
  """`[B, Ho, Wo, C, kh, kw]`: each pooling window's pixels (a view)."""
  windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=(1, 2))
  return windows[:, :: s[0], :: s[1]]


def max_pool_forward(
    x: np.ndarray, window: int | Sequence[int] = 2, strides: int | Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Max over each `kh x kw` window -> `(y, argmax)`.

  `argmax [B, Ho, Wo, C]` is the flat index (row-major, `u * kw + v`) of the
  winning pixel inside its window; the backward pass needs it. Ties: the FIRST
  maximum in row-major window order wins (`np.argmax`), which is also where
  `jax.grad` of `flax.linen.max_pool` sends the gradient on CPU (XLA's
  select-and-scatter keeps the earlier element when `>=` holds); a test checks this.
  """
  k = _pair(window)
  s = _pair(strides if strides is not None else window)
  w = _pool_windows(x, k, s)
  flat = w.reshape(*w.shape[:4], -1)
  argmax = flat.argmax(axis=-1)
  y = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
  return y, argmax


def max_pool_backward(
    dy: np.ndarray,
    argmax: np.ndarray,
    x_shape: Sequence[int],
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
) -> np.ndarray:
  """`dx`: each window's gradient goes to its arg-max pixel only; the others get 0.

  `max` is locally the identity on the winner and ignores the rest, so the
  winner's derivative is 1 and the others' 0. Overlapping windows (stride <
  window) can pick the same pixel: their gradients add up.
  """
  _, kw = _pair(window)
  sh, sw = _pair(strides if strides is not None else window)
  b, ho, wo, c = dy.shape
  dx = np.zeros(x_shape, dy.dtype)
  rows = np.arange(ho)[None, :, None, None] * sh + argmax // kw
  cols = np.arange(wo)[None, None, :, None] * sw + argmax % kw
  bi = np.arange(b)[:, None, None, None]
  ci = np.arange(c)[None, None, None, :]
  np.add.at(dx, (bi, rows, cols, ci), dy)
  return dx


def avg_pool_forward(
    x: np.ndarray, window: int | Sequence[int] = 2, strides: int | Sequence[int] | None = None
) -> np.ndarray:
  """Mean over each `kh x kw` window: a conv with fixed weights `1 / (kh*kw)` per channel."""
  k = _pair(window)
  s = _pair(strides if strides is not None else window)
  return _pool_windows(x, k, s).mean(axis=(-2, -1))


def avg_pool_backward(
    dy: np.ndarray,
    x_shape: Sequence[int],
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
) -> np.ndarray:
  """`dx`: every pixel of a window gets `1 / (kh*kw)` of the window's gradient (summed
  over the windows it belongs to, if they overlap)."""
  kh, kw = _pair(window)
  sh, sw = _pair(strides if strides is not None else window)
  _, ho, wo, _ = dy.shape
  dx = np.zeros(x_shape, dy.dtype)
  share = dy / (kh * kw)
  for u in range(kh):
    for v in range(kw):
      dx[:, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw, :] += share
  return dx


# --------------------------------------------------------------------------------------------
# Padding, flatten, dense, activations, loss.
# --------------------------------------------------------------------------------------------


def pad_forward(x: np.ndarray, pads: tuple[Pair, Pair]) -> np.ndarray:
  """Zero-pads H and W by `((top, bottom), (left, right))`."""
  return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def pad_backward(dy: np.ndarray, pads: tuple[Pair, Pair]) -> np.ndarray:
  """The padded zeros are constants: the gradient is `dy` with the border cut off."""
  (t, b), (l, r) = pads
  return dy[:, t : dy.shape[1] - b, l : dy.shape[2] - r, :]


def flatten_forward(x: np.ndarray) -> np.ndarray:
  """`[B, H, W, C] -> [B, H*W*C]` in NHWC (row-major) order, channel fastest, as `Flatten`."""
  return x.reshape(x.shape[0], -1)


def flatten_backward(dy: np.ndarray, x_shape: Sequence[int]) -> np.ndarray:
  """Flattening only renames the numbers: reshape the gradient back."""
  return dy.reshape(x_shape)


def dense_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
  """`y = x @ kernel + bias`: `[B, D_in] -> [B, D_out]`."""
  y = x @ kernel
  return y if bias is None else y + bias


def dense_backward(
    dy: np.ndarray, x: np.ndarray, kernel: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(dx, dkernel, dbias) = (dy @ kernel.T, x.T @ dy, sum_b dy)`.

  `y[b, o] = sum_i x[b, i] * kernel[i, o] + bias[o]`, so `dy[b, o]` flows back
  to `x[b, i]` through `kernel[i, o]`, and `kernel[i, o]` collects `x[b, i] * dy[b, o]`
  summed over the batch (every image used the same weights).
  """
  return dy @ kernel.T, x.T @ dy, dy.sum(axis=0)


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
  """`1 / (1 + e^-x)`, written so that large |x| does not overflow."""
  e = np.exp(-np.abs(x))
  return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
  """`sigma'(x) = sigma(x) (1 - sigma(x))`: computed from the output `y`."""
  return dy * y * (1.0 - y)


def tanh_forward(x: np.ndarray) -> np.ndarray:
  return np.tanh(x)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
  """`tanh'(x) = 1 - tanh(x)^2`: computed from the output `y`."""
  return dy * (1.0 - y * y)


def relu_forward(x: np.ndarray) -> np.ndarray:
  return np.maximum(x, 0.0)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
  """`relu'(x) = 1 if x > 0 else 0`; at exactly 0 we use 0, as `jax.nn.relu` does."""
  return dy * (x > 0)


def softmax_cross_entropy_forward(logits: np.ndarray, labels: np.ndarray) -> float:
  """`mean_b [ logsumexp(logits[b]) - logits[b, labels[b]] ]`.

  The mean (not the sum) over the batch, as `cnn_jax.train.steps.cross_entropy_loss`.
  """
  m = logits.max(axis=1, keepdims=True)
  log_z = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
  return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))


def softmax_cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """`dloss/dlogits = (softmax(logits) - onehot(labels)) / B`: predicted minus target,
  divided by the batch size because the loss is a mean. The start of backprop."""
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  p[np.arange(len(labels)), labels] -= 1.0
  return p / len(labels)


# --------------------------------------------------------------------------------------------
# Layers and the network that chains them.
# --------------------------------------------------------------------------------------------

Params = Mapping[str, Any]


class Layer:
  """One step of the chain. `forward(params, x) -> (y, cache)` and
  `backward(params, cache, dy) -> (dx, grads)`; `cache` is what the forward pass
  remembers for the backward pass, `grads` has the keys of `params` (empty for a
  layer without parameters). `path` says where the layer's parameters sit in the
  network's (Flax-shaped) params pytree, e.g. `("c1", "conv")`; None: no parameters.
  """

  path: tuple[str, ...] | None = None

  def forward(self, params: Params, x: np.ndarray) -> tuple[np.ndarray, Any]:
    raise NotImplementedError

  def backward(self, params: Params, cache: Any, dy: np.ndarray) -> tuple[np.ndarray, dict]:
    raise NotImplementedError


@dataclass
class Conv(Layer):
  """`conv2d_*` with parameters `{"kernel", "bias"}` (as `cnn_jax.layers.Conv2D`)."""

  path: tuple[str, ...]
  strides: int | Sequence[int] = 1
  padding: PadSpec = "VALID"

  def forward(self, params, x):
    return conv2d_forward(x, params["kernel"], params["bias"], self.strides, self.padding), x

  def backward(self, params, x, dy):
    # Looked up in the module at call time, so a test can swap in a buggy version.
    dx, dk, db = conv2d_backward(dy, x, params["kernel"], self.strides, self.padding)
    return dx, {"kernel": dk, "bias": db}


@dataclass
class Dense(Layer):
  """`dense_*` with parameters `{"kernel", "bias"}` (as `cnn_jax.layers.Dense`)."""

  path: tuple[str, ...]

  def forward(self, params, x):
    return dense_forward(x, params["kernel"], params["bias"]), x

  def backward(self, params, x, dy):
    dx, dk, db = dense_backward(dy, x, params["kernel"])
    return dx, {"kernel": dk, "bias": db}


@dataclass
class Pool(Layer):
  """Max or average pooling, `kind` in {"max", "avg"} (as `cnn_jax.layers.Pool`, VALID)."""

  kind: str = "max"
  window: int | Sequence[int] = 2
  strides: int | Sequence[int] | None = None

  def forward(self, params, x):
    if self.kind == "max":
      y, argmax = max_pool_forward(x, self.window, self.strides)
      return y, (x.shape, argmax)
    if self.kind == "avg":
      return avg_pool_forward(x, self.window, self.strides), (x.shape, None)
    raise ValueError(f"Unknown pooling kind {self.kind!r}. Known pooling kinds: avg, max.")

  def backward(self, params, cache, dy):
    x_shape, argmax = cache
    if self.kind == "max":
      return max_pool_backward(dy, argmax, x_shape, self.window, self.strides), {}
    return avg_pool_backward(dy, x_shape, self.window, self.strides), {}


ACTIVATIONS: dict[str, tuple[Callable, Callable, str]] = {
    # name: (forward, backward, what backward needs: the layer's "input" or "output")
    "sigmoid": (sigmoid_forward, sigmoid_backward, "output"),
    "tanh": (tanh_forward, tanh_backward, "output"),
    "relu": (relu_forward, relu_backward, "input"),
}


@dataclass
class Activation(Layer):
  """An element-wise nonlinearity: `dx = dy * f'(x)`, position by position."""

  name: str = "relu"

  def forward(self, params, x):
    if self.name not in ACTIVATIONS:
      raise ValueError(f"Unknown activation {self.name!r}. Known: {', '.join(ACTIVATIONS)}.")
    f, _, needs = ACTIVATIONS[self.name]
    y = f(x)
    return y, (x if needs == "input" else y)

  def backward(self, params, cache, dy):
    return ACTIVATIONS[self.name][1](dy, cache), {}


@dataclass
class Flatten(Layer):
  """`[B, H, W, C] -> [B, H*W*C]`, NHWC order."""

  def forward(self, params, x):
    return flatten_forward(x), x.shape

  def backward(self, params, x_shape, dy):
    return flatten_backward(dy, x_shape), {}


@dataclass
class PadTo(Layer):
  """Zero-pads `[B, H, W, C]` evenly to `size x size` (extra pixel at bottom/right), as
  `cnn_jax.models.lenet.pad_to`: LeNet-5's 28x28 -> 32x32."""

  size: int = 32

  def pads(self, h: int, w: int) -> tuple[Pair, Pair]:
    if h > self.size or w > self.size:
      raise ValueError(f"PadTo({self.size}) got a {h}x{w} input.")
    ph, pw = self.size - h, self.size - w
    return (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)

  def forward(self, params, x):
    pads = self.pads(*x.shape[1:3])
    return pad_forward(x, pads), pads

  def backward(self, params, pads, dy):
    return pad_backward(dy, pads), {}


def _get(tree: Params, path: tuple[str, ...]) -> Params:
  for key in path:
    tree = tree[key]
  return tree


def _set(tree: dict, path: tuple[str, ...], value: dict) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def as_float64(tree: Any) -> Any:
  """A params pytree (nested mappings of arrays, e.g. Flax's `variables["params"]`,
  JAX arrays included) as nested dicts of float64 NumPy arrays."""
  if isinstance(tree, Mapping):
    return {k: as_float64(v) for k, v in tree.items()}
  return np.asarray(tree, np.float64)


@dataclass
class Network:
  """A chain of layers, trained by backpropagation.

  `forward` runs the layers in order and keeps each layer's cache; `backward`
  starts from `dloss/dlogits` and runs the layers in REVERSE, each turning the
  gradient w.r.t. its output into the gradient w.r.t. its input (passed on to
  the layer below) and w.r.t. its own parameters (stored at the layer's `path`).
  That is all backprop is: the chain rule, applied one layer at a time.
  """

  layers: list[Layer] = field(default_factory=list)

  def forward(self, params: Params, x: np.ndarray) -> tuple[np.ndarray, list]:
    caches = []
    for layer in self.layers:
      p = _get(params, layer.path) if layer.path else {}
      x, cache = layer.forward(p, x)
      caches.append(cache)
    return x, caches

  def backward(self, params: Params, caches: list, dy: np.ndarray) -> tuple[np.ndarray, dict]:
    """`(dloss/dinput, grads)`; `grads` has the structure of `params`."""
    grads: dict = {}
    for layer, cache in zip(reversed(self.layers), reversed(caches)):
      p = _get(params, layer.path) if layer.path else {}
      dy, g = layer.backward(p, cache, dy)
      if layer.path:
        _set(grads, layer.path, g)
    return dy, grads

  def apply(self, params: Params, x: np.ndarray) -> np.ndarray:
    """The logits, `[B, num_classes]`."""
    return self.forward(params, x)[0]

  def loss_and_grads(
      self, params: Params, x: np.ndarray, labels: np.ndarray
  ) -> tuple[float, dict]:
    """Mean softmax cross-entropy and its gradient w.r.t. every parameter."""
    logits, caches = self.forward(params, x)
    loss = softmax_cross_entropy_forward(logits, labels)
    _, grads = self.backward(params, caches, softmax_cross_entropy_backward(logits, labels))
    return loss, grads


def lenet5(activation: str = "tanh", pool: str = "avg") -> Network:
  """LeNet-5 exactly as `cnn_jax.models.lenet.LeNet5`, its parameters at the same paths.

  pad to 32x32 -> c1 (6@5x5) -> act -> s2 pool 2 -> c3 (16@5x5) -> act -> s4 pool 2
  -> c5 (120@5x5) -> act -> flatten (NHWC) -> f6 (84) -> act -> out (num_classes).
  The number of classes comes from the `out` kernel in `params`.

      net = lenet5("relu", "max")
      loss, grads = net.loss_and_grads(as_float64(variables["params"]), images, labels)
      # grads["c1"]["conv"]["kernel"], ..., grads["out"]["bias"]: same tree as params.
  """
  return Network([
      PadTo(32),
      Conv(("c1", "conv")), Activation(activation), Pool(pool, 2),
      Conv(("c3", "conv")), Activation(activation), Pool(pool, 2),
      Conv(("c5", "conv")), Activation(activation),
      Flatten(),
      Dense(("f6",)), Activation(activation),
      Dense(("out",)),
  ])


# --------------------------------------------------------------------------------------------
# The lecture's point: a conv is a dense layer with shared (tied) weights.
# --------------------------------------------------------------------------------------------


def conv_as_dense_matrix(
    kernel: np.ndarray,
    input_shape: Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: PadSpec = "VALID",
) -> tuple[np.ndarray, np.ndarray]:
  """Unrolls a conv into the dense matrix `M` with `flat(y) = flat(x) @ M + bias` (per image).

  `input_shape` is `(H, W, C_in)`; `M` is `[H*W*C_in, Ho*Wo*K]`, rows and columns in
  NHWC-flatten order. Column `(i, j, k)` holds kernel `k` placed over the patch
  that output `(i, j)` reads, zeros elsewhere: a (block) Toeplitz matrix. Entries
  that would fall on the zero padding are simply absent (those inputs are 0).

  Also returns `tie [H*W*C_in, Ho*Wo*K]`: for each entry, the flat index (into
  `kernel.ravel()`) of the kernel weight it is a copy of, or -1 for a structural
  zero. A dense layer of this shape would have `M.size` free weights; the conv
  has only `kernel.size`, each repeated at up to `Ho*Wo` places: parameter sharing.
  """
  h, w, c_in = input_shape
  kh, kw, _, k_out = kernel.shape
  sh, sw = _pair(strides)
  pad_h, pad_w = resolve_padding(padding, (h, w), (kh, kw), (sh, sw))
  ho, wo = conv_output_size(h, kh, sh, pad_h), conv_output_size(w, kw, sw, pad_w)
  tie = -np.ones((h, w, c_in, ho, wo, k_out), np.int64)
  weight_id = np.arange(kernel.size).reshape(kernel.shape)  # [kh, kw, C_in, K]
  for i in range(ho):
    for j in range(wo):
      for u in range(kh):
        for v in range(kw):
          r, s = i * sh + u - pad_h[0], j * sw + v - pad_w[0]  # input pixel (unpadded coords)
          if 0 <= r < h and 0 <= s < w:
            tie[r, s, :, i, j, :] = weight_id[u, v]
  tie = tie.reshape(h * w * c_in, ho * wo * k_out)
  matrix = np.where(tie >= 0, kernel.ravel()[np.maximum(tie, 0)], 0.0)
  return matrix, tie


def tied_weight_gradient(
    dmatrix: np.ndarray, tie: np.ndarray, kernel_shape: Sequence[int]
) -> np.ndarray:
  """The gradient of each shared kernel weight: the SUM of the gradients of all the
  matrix entries that are copies of it (`tie`). Structural zeros get none."""
  used = tie >= 0
  total = np.bincount(tie[used], weights=dmatrix[used], minlength=int(np.prod(kernel_shape)))
  return total.reshape(kernel_shape)


def conv_backward_via_dense(
    dy: np.ndarray,
    x: np.ndarray,
    kernel: np.ndarray,
    strides: int | Sequence[int] = 1,
    padding: PadSpec = "VALID",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(dx, dkernel, dbias)` of a conv computed as a FULLY CONNECTED layer's backprop.

  1. Unroll the conv: `flat(y) = flat(x) @ M + bias_tiled` (`conv_as_dense_matrix`).
  2. Ordinary dense backprop (`dense_backward`): `dx = dy @ M.T`, `dM = x.T @ dy`.
  3. Parameter sharing: each kernel weight appears in `M` many times, so its
     gradient is the sum of `dM` over its copies (`tied_weight_gradient`); the
     bias likewise is the sum over all positions.

  Equal to `conv2d_backward` (tests check it): a CNN's backprop IS a dense
  network's backprop, plus summing the gradients of tied weights.
  """
  b = x.shape[0]
  matrix, tie = conv_as_dense_matrix(kernel, x.shape[1:], strides, padding)
  dy_flat = dy.reshape(b, -1)
  dx_flat, dmatrix, dbias_tiled = dense_backward(dy_flat, x.reshape(b, -1), matrix)
  dkernel = tied_weight_gradient(dmatrix, tie, kernel.shape)
  dbias = dbias_tiled.reshape(-1, kernel.shape[-1]).sum(axis=0)  # columns (i, j, k): sum i, j
  return dx_flat.reshape(x.shape), dkernel, dbias
