"""Backprop by hand (`cnn_jax.backprop_reference`) against two independent witnesses.

* `jax.grad` of the Flax models' mean cross-entropy: LeNet-5 with every
  activation x pool, and a small CNN with a stride-2 padded conv, an unpadded
  conv, max and average pools, flatten and dense layers. JAX runs in float64
  through the `jax.enable_x64(True)` context (`jax.experimental.enable_x64` is
  gone from this JAX); LeNet5 casts its logits to float32 at the end, so its
  loss gradient carries float32 rounding (~1e-7), well inside the 1e-5 tolerance.
* Central finite differences, layer by layer, with no JAX at all.

Gradient differences are measured per parameter array as
`max |ours - jax| / max |jax|` (relative to the array's largest entry, so
entries that are nearly zero by cancellation do not make the measure blow up).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import backprop_reference as br
from cnn_jax import layers
from cnn_jax.models.lenet import LeNet5
from cnn_jax.train.steps import cross_entropy_loss

TOLERANCE = 1e-5


@pytest.fixture
def x64():
  """float64 in JAX for the duration of one test only."""
  with jax.enable_x64(True):
    yield


def relative_difference(ours: np.ndarray, reference: np.ndarray) -> float:
  """`max |ours - reference| / max |reference|`."""
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


def gradient_differences(ours, reference) -> dict[str, float]:
  """`{"c1/conv/kernel": relative difference, ...}` for every parameter of `reference`."""
  flat_ref = jax.tree_util.tree_flatten_with_path(reference)[0]
  out = {}
  for path, leaf in flat_ref:
    keys = [p.key for p in path]
    mine = ours
    for k in keys:
      mine = mine[k]
    assert mine.shape == leaf.shape, "/".join(keys)
    out["/".join(keys)] = relative_difference(mine, np.asarray(leaf))
  return out


def assert_gradients_match(ours, reference, what: str) -> float:
  diffs = gradient_differences(ours, reference)
  worst = max(diffs, key=diffs.get)
  print(f"\n{what}: largest relative gradient difference {diffs[worst]:.2e} ({worst})")
  bad = {k: v for k, v in diffs.items() if not v <= TOLERANCE}
  assert not bad, f"{what}: gradients differ from jax.grad: {bad}"
  return diffs[worst]


def random_params(model: nn.Module, x: np.ndarray, rng: np.random.Generator) -> dict:
  """Params with the model's shapes, drawn from `rng`: kernels ~ N(0, 1/fan_in), biases
  ~ N(0, 0.1^2) (non-zero, so the bias enters the forward pass)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(x))["params"]

  def draw(leaf):
    if leaf.ndim == 1:
      return 0.1 * rng.normal(size=leaf.shape)
    return rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))

  return jax.tree.map(draw, shapes)


def jax_loss_and_grads(model: nn.Module, params, x, labels):
  def loss_fn(p, images, targets):
    return cross_entropy_loss(model.apply({"params": p}, images), targets)

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(
      jax.tree.map(jnp.asarray, params), jnp.asarray(x), jnp.asarray(labels)
  )
  return float(loss), jax.tree.map(np.asarray, grads)


# --------------------------------------------------------------------------------------------
# Whole networks against jax.grad.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_lenet5_gradients_equal_jax_grad(x64, act, pool):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 28, 28, 1))  # 28x28, zero-padded to 32x32 inside both models
  labels = rng.integers(0, 10, size=3)
  model = LeNet5(activation=act, pool=pool, dtype=jnp.float64)
  params = random_params(model, x, rng)

  loss, grads = br.lenet5(act, pool).loss_and_grads(br.as_float64(params), x, labels)
  jax_loss, jax_grads = jax_loss_and_grads(model, params, x, labels)

  np.testing.assert_allclose(loss, jax_loss, rtol=1e-6)
  assert jax.tree.structure(grads) == jax.tree.structure(jax_grads)
  assert_gradients_match(grads, jax_grads, f"LeNet-5 {act}/{pool}")


class SmallCNN(nn.Module):
  """22x22x3 -> conv 4@3x3 stride 2 pad 1 (11x11) -> relu -> max pool 3 stride 2, overlapping
  (5x5) -> conv 6@2x2 unpadded (4x4) -> sigmoid -> avg pool 2 (2x2) -> flatten (24)
  -> dense 8 -> tanh -> dense 5."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(layers.Conv2D(4, 3, strides=2, padding=1, name="conv1")(x))
    x = layers.Pool("max", 3, 2)(x)
    x = nn.sigmoid(layers.Conv2D(6, 2, name="conv2")(x))
    x = layers.Pool("avg", 2)(x)
    x = layers.Flatten()(x)
    x = jnp.tanh(layers.Dense(8, name="fc")(x))
    return layers.Dense(5, name="out")(x)


def small_cnn_reference() -> br.Network:
  return br.Network([
      br.Conv(("conv1",), strides=2, padding=1), br.Activation("relu"), br.Pool("max", 3, 2),
      br.Conv(("conv2",)), br.Activation("sigmoid"), br.Pool("avg", 2),
      br.Flatten(),
      br.Dense(("fc",)), br.Activation("tanh"),
      br.Dense(("out",)),
  ])


def small_cnn_case():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 22, 22, 3))
  labels = rng.integers(0, 5, size=4)
  params = random_params(SmallCNN(), x, rng)
  return x, labels, params


def test_small_cnn_gradients_equal_jax_grad(x64):
  x, labels, params = small_cnn_case()
  loss, grads = small_cnn_reference().loss_and_grads(br.as_float64(params), x, labels)
  jax_loss, jax_grads = jax_loss_and_grads(SmallCNN(), params, x, labels)
  np.testing.assert_allclose(loss, jax_loss, rtol=1e-12)
  assert_gradients_match(grads, jax_grads, "small CNN")


def _flipped_kernel(real, dy, x, kernel, strides=1, padding="VALID"):
  """The classic bug: flip the kernel when sending the gradient to the input."""
  dx, _, _ = real(dy, x, kernel[::-1, ::-1], strides, padding)
  _, dkernel, dbias = real(dy, x, kernel, strides, padding)
  return dx, dkernel, dbias


def _no_sum_over_positions(real, dy, x, kernel, strides=1, padding="VALID"):
  """The other classic: treat a shared weight as if used once (first position only)."""
  dx, _, _ = real(dy, x, kernel, strides, padding)
  first = np.zeros_like(dy)
  first[:, :1, :1] = dy[:, :1, :1]
  _, dkernel, dbias = real(first, x, kernel, strides, padding)
  return dx, dkernel, dbias


@pytest.mark.parametrize("bug", [_flipped_kernel, _no_sum_over_positions], ids=lambda f: f.__name__)
def test_a_buggy_conv_backward_fails_the_comparison(x64, monkeypatch, bug):
  x, labels, params = small_cnn_case()
  _, jax_grads = jax_loss_and_grads(SmallCNN(), params, x, labels)
  monkeypatch.setattr(br, "conv2d_backward", functools.partial(bug, br.conv2d_backward))
  _, grads = small_cnn_reference().loss_and_grads(br.as_float64(params), x, labels)
  diffs = gradient_differences(grads, jax_grads)
  assert diffs["conv1/kernel"] > 1e-2, diffs  # both bugs corrupt the first conv's kernel
  with pytest.raises(AssertionError, match="differ from jax.grad"):
    assert_gradients_match(grads, jax_grads, f"small CNN with {bug.__name__}")


def test_max_pool_ties_route_the_gradient_like_jax(x64):
  """Ties (integer data, overlapping windows): the first maximum in row-major order wins."""
  rng = np.random.default_rng(0)
  x = rng.integers(0, 3, size=(2, 7, 7, 2)).astype(np.float64)
  dy = rng.normal(size=(2, 3, 3, 2))
  y, argmax = br.max_pool_forward(x, 3, 2)
  ours = br.max_pool_backward(dy, argmax, x.shape, 3, 2)
  theirs = jax.grad(lambda v: jnp.sum(nn.max_pool(v, (3, 3), (2, 2)) * dy))(jnp.asarray(x))
  np.testing.assert_array_equal(y, nn.max_pool(jnp.asarray(x), (3, 3), (2, 2)))
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------------------------
# The lecture's point: a conv is a dense layer with tied weights.
# --------------------------------------------------------------------------------------------

CONV_CASES = [(1, "VALID"), (2, "SAME"), ((2, 1), ((1, 0), (0, 2)))]


@pytest.mark.parametrize("strides,padding", CONV_CASES)
def test_conv_equals_its_unrolled_dense_matrix(strides, padding):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 5, 3))
  kernel = rng.normal(size=(3, 2, 3, 4))
  bias = rng.normal(size=4)
  y = br.conv2d_forward(x, kernel, bias, strides, padding)
  matrix, tie = br.conv_as_dense_matrix(kernel, x.shape[1:], strides, padding)

  # Forward: flat(x) @ M + bias (tiled over positions) is the conv.
  y_dense = x.reshape(2, -1) @ matrix + np.tile(bias, y.shape[1] * y.shape[2])
  np.testing.assert_allclose(y_dense.reshape(y.shape), y, rtol=1e-12, atol=1e-12)
  # Sharing: M has many entries but only kernel.size distinct weights, each used repeatedly.
  assert set(np.unique(tie[tie >= 0])) == set(range(kernel.size))
  assert (tie >= 0).sum() > kernel.size

  # Backward: the dense layer's backprop, tied weights' gradients summed, is the conv's.
  dy = rng.normal(size=y.shape)
  for ours, dense in zip(br.conv2d_backward(dy, x, kernel, strides, padding),
                         br.conv_backward_via_dense(dy, x, kernel, strides, padding)):
    np.testing.assert_allclose(dense, ours, rtol=1e-12, atol=1e-12)

  # Summing is essential: one copy per weight (no sum) gives a different gradient.
  dmatrix = x.reshape(2, -1).T @ dy.reshape(2, -1)
  first_copy = np.zeros(kernel.size)
  used = np.flatnonzero(tie >= 0)
  first_copy[tie.ravel()[used]] = dmatrix.ravel()[used]  # one copy per weight
  dkernel = br.conv2d_backward(dy, x, kernel, strides, padding)[1]
  assert relative_difference(first_copy.reshape(kernel.shape), dkernel) > 1e-2


# --------------------------------------------------------------------------------------------
# Every layer's backward pass against central finite differences (no JAX).
# --------------------------------------------------------------------------------------------


def _max_pool(x):
  return br.max_pool_forward(x, 3, 2)[0]


def _max_pool_grad(dy, x):
  return (br.max_pool_backward(dy, br.max_pool_forward(x, 3, 2)[1], x.shape, 3, 2),)


LAYERS = {
    # name: (forward(*inputs), backward(dy, *inputs) -> grads of inputs, input shapes)
    "conv stride (2,1) padding ((1,0),(0,1))": (
        lambda x, k, b: br.conv2d_forward(x, k, b, (2, 1), ((1, 0), (0, 1))),
        lambda dy, x, k, b: br.conv2d_backward(dy, x, k, (2, 1), ((1, 0), (0, 1))),
        [(2, 5, 6, 2), (3, 2, 2, 3), (3,)],
    ),
    "conv SAME stride 2": (
        lambda x, k, b: br.conv2d_forward(x, k, b, 2, "SAME"),
        lambda dy, x, k, b: br.conv2d_backward(dy, x, k, 2, "SAME"),
        [(1, 5, 5, 2), (3, 3, 2, 2), (2,)],
    ),
    "max pool 3 stride 2": (_max_pool, _max_pool_grad, [(2, 7, 7, 2)]),
    "avg pool 2 stride 1": (
        lambda x: br.avg_pool_forward(x, 2, 1),
        lambda dy, x: (br.avg_pool_backward(dy, x.shape, 2, 1),),
        [(2, 4, 5, 2)],
    ),
    "pad to 8": (
        lambda x: br.PadTo(8).forward({}, x)[0],
        lambda dy, x: (br.PadTo(8).backward({}, br.PadTo(8).pads(5, 6), dy)[0],),
        [(2, 5, 6, 1)],
    ),
    "flatten": (
        br.flatten_forward, lambda dy, x: (br.flatten_backward(dy, x.shape),), [(2, 3, 2, 2)]
    ),
    "dense": (br.dense_forward, lambda dy, x, k, b: br.dense_backward(dy, x, k),
              [(3, 5), (5, 4), (4,)]),
    "sigmoid": (br.sigmoid_forward, lambda dy, x: (br.sigmoid_backward(dy, br.sigmoid_forward(x)),),
                [(3, 7)]),
    "tanh": (br.tanh_forward, lambda dy, x: (br.tanh_backward(dy, br.tanh_forward(x)),), [(3, 7)]),
    "relu": (br.relu_forward, lambda dy, x: (br.relu_backward(dy, x),), [(3, 7)]),
    "softmax cross-entropy": (
        lambda z: np.array(br.softmax_cross_entropy_forward(z, np.array([0, 3, 1]))),
        lambda dy, z: (dy * br.softmax_cross_entropy_backward(z, np.array([0, 3, 1])),),
        [(3, 4)],
    ),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_backward_equals_finite_differences(name):
  """`backward(dy)` is the gradient of `sum(forward(inputs) * dy)`: compare it with
  `(f(a + eps) - f(a - eps)) / (2 eps)`, one input entry at a time."""
  forward, backward, shapes = LAYERS[name]
  rng = np.random.default_rng(0)
  inputs = [rng.normal(size=s) for s in shapes]
  dy = rng.normal(size=np.shape(forward(*inputs)))
  analytic = backward(dy, *inputs)
  assert len(analytic) == len(inputs)
  eps = 1e-6
  for a, grad in zip(inputs, analytic):
    numeric = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
      old = a[idx]
      a[idx] = old + eps
      up = np.sum(forward(*inputs) * dy)
      a[idx] = old - eps
      down = np.sum(forward(*inputs) * dy)
      a[idx] = old
      numeric[idx] = (up - down) / (2 * eps)
    assert grad.shape == a.shape
    assert relative_difference(grad, numeric) < 1e-6, (name, relative_difference(grad, numeric))
