"""LocallyConnected2D: a convolution's geometry without parameter sharing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.layers import Conv2D, LocallyConnected2D

GEOMETRIES = [  # (input H, W, C), features, kernel, strides, padding
    ((9, 8, 3), 4, 3, 1, "VALID"),
    ((9, 8, 3), 4, 3, 2, 1),
    ((10, 10, 1), 6, (5, 3), (2, 1), "SAME"),
    ((7, 7, 2), 2, 2, 2, ((0, 1), (1, 0))),
]


def _ints(shape, seed):
  """Small integers as float32: every sum is exact, so outputs can be compared with ==."""
  return jnp.asarray(np.random.default_rng(seed).integers(-3, 4, shape).astype(np.float32))


@pytest.mark.parametrize("shape, features, kernel, strides, padding", GEOMETRIES)
def test_equal_kernels_at_every_position_give_the_conv_exactly(shape, features, kernel, strides,
                                                              padding):
  x = _ints((2, *shape), 0)
  conv = Conv2D(features, kernel, strides=strides, padding=padding)
  lc = LocallyConnected2D(features, kernel, strides=strides, padding=padding)
  cv = conv.init(jax.random.key(0), x)
  lv = lc.init(jax.random.key(1), x)
  k, b = _ints(cv["params"]["kernel"].shape, 1), _ints(cv["params"]["bias"].shape, 2)
  ho, wo = lv["params"]["kernel"].shape[:2]
  tied = {"params": {"kernel": jnp.broadcast_to(k, (ho, wo, *k.shape)),
                     "bias": jnp.broadcast_to(b, (ho, wo, *b.shape))}}
  expected = conv.apply({"params": {"kernel": k, "bias": b}}, x)
  np.testing.assert_array_equal(lc.apply(tied, x), expected)


@pytest.mark.parametrize("shape, features, kernel, strides, padding", GEOMETRIES)
def test_parameter_count_is_the_formula(shape, features, kernel, strides, padding):
  x = jnp.zeros((1, *shape))
  conv = Conv2D(features, kernel, strides=strides, padding=padding)
  y = conv.apply(conv.init(jax.random.key(0), x), x)
  ho, wo = y.shape[1:3]
  kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
  c = shape[2]
  lv = LocallyConnected2D(features, kernel, strides=strides, padding=padding).init(
      jax.random.key(0), x)
  count = sum(a.size for a in jax.tree.leaves(lv))
  assert count == ho * wo * (kh * kw * c * features + features)
  assert count == ho * wo * sum(a.size for a in jax.tree.leaves(conv.init(jax.random.key(0), x)))


def test_untied_kernels_match_a_loop_over_positions():
  x = _ints((2, 6, 5, 2), 3)
  lc = LocallyConnected2D(3, 3, strides=1, padding="VALID")
  v = lc.init(jax.random.key(0), x)
  k = _ints(v["params"]["kernel"].shape, 4)  # a different kernel at every position
  b = _ints(v["params"]["bias"].shape, 5)
  y = np.asarray(lc.apply({"params": {"kernel": k, "bias": b}}, x))
  xn, kn, bn = np.asarray(x), np.asarray(k), np.asarray(b)
  for i in range(y.shape[1]):
    for j in range(y.shape[2]):
      want = np.einsum("buvc,uvck->bk", xn[:, i:i + 3, j:j + 3], kn[i, j]) + bn[i, j]
      np.testing.assert_array_equal(y[:, i, j], want)
  # and it is not a convolution: shifting the input does not shift the output
  shifted = np.asarray(lc.apply({"params": {"kernel": k, "bias": b}}, jnp.roll(x, 1, axis=2)))
  assert not np.array_equal(shifted[:, :, 1:], y[:, :, :-1])


def test_initial_kernels_have_the_fan_in_of_one_position():
  x = jnp.zeros((1, 12, 12, 4))
  k = LocallyConnected2D(16, 3).init(jax.random.key(0), x)["params"]["kernel"]
  # lecun_normal with fan-in 3*3*4 = 36 (not H' W' times that): std 1/6.
  assert abs(float(jnp.std(k)) - 1 / 6) < 0.01
