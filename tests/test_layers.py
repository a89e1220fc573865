"""The lecture's worked examples, reproduced through the Flax modules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from cnn_jax import layers
from cnn_jax.errors import ConfigError

LECTURE_INPUT = np.array(
    [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]],
    np.float32,
)
LECTURE_FILTER = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
SIX_BY_SIX = np.array(
    [
        [1, 0, 0, 0, 0, 1],
        [0, 1, 0, 0, 1, 0],
        [0, 0, 1, 1, 0, 0],
        [1, 0, 0, 0, 1, 0],
        [0, 1, 0, 0, 1, 0],
        [0, 0, 1, 0, 1, 0],
    ],
    np.float32,
)
FILTER_1 = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float32)  # diagonal
FILTER_2 = np.array([[-1, 1, -1], [-1, 1, -1], [-1, 1, -1]], np.float32)  # vertical line


def conv_with(kernels: np.ndarray, x: np.ndarray, **kw) -> np.ndarray:
  """Applies a Conv2D whose kernel is set to `kernels [kh, kw, C_in, K]`, zero bias."""
  conv = layers.Conv2D(features=kernels.shape[-1], kernel_size=kernels.shape[:2], **kw)
  params = {"params": {"kernel": jnp.asarray(kernels), "bias": jnp.zeros(kernels.shape[-1])}}
  return np.asarray(conv.apply(params, jnp.asarray(x)))


def max_pool_reference(m: np.ndarray, k: int = 2) -> np.ndarray:
  h, w = m.shape[0] // k, m.shape[1] // k
  return m[: h * k, : w * k].reshape(h, k, w, k).max(axis=(1, 3))


def test_lecture_5x5_example():
  out = conv_with(LECTURE_FILTER[:, :, None, None], LECTURE_INPUT[None, :, :, None])
  np.testing.assert_array_equal(out[0, :, :, 0], [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_6x6_two_kernels_match_correlate2d_and_max_pool():
  kernels = np.stack([FILTER_1, FILTER_2], axis=-1)[:, :, None, :]  # [3, 3, 1, 2]
  out = conv_with(kernels, SIX_BY_SIX[None, :, :, None])
  assert out.shape == (1, 4, 4, 2)
  maps = []
  for k, f in enumerate((FILTER_1, FILTER_2)):
    expected = signal.correlate2d(SIX_BY_SIX, f, mode="valid")
    np.testing.assert_array_equal(out[0, :, :, k], expected)
    maps.append(expected)
  # The lecture's filter-1 map: 3 where the diagonal is matched exactly.
  np.testing.assert_array_equal(
      out[0, :, :, 0], [[3, -1, -3, -1], [-3, 1, 0, -3], [-3, -3, 0, 1], [3, -2, -2, -1]]
  )
  pooled = np.asarray(layers.Pool("max", 2).apply({}, jnp.asarray(out)))
  for k in range(2):
    np.testing.assert_array_equal(pooled[0, :, :, k], max_pool_reference(maps[k]))


def test_cross_correlation_not_convolution():
  # Every filter in the lecture is symmetric under a 180-degree turn, where
  # correlation and convolution agree; an asymmetric kernel tells them apart.
  kernel = np.array([[1, 2, 0], [0, -1, 0], [0, 0, 3]], np.float32)
  out = conv_with(kernel[:, :, None, None], SIX_BY_SIX[None, :, :, None])[0, :, :, 0]
  np.testing.assert_array_equal(out, signal.correlate2d(SIX_BY_SIX, kernel, "valid"))
  assert not np.array_equal(out, signal.convolve2d(SIX_BY_SIX, kernel, "valid"))


def test_stride_two_subsamples_the_feature_map():
  kernels = np.stack([FILTER_1, FILTER_2], axis=-1)[:, :, None, :]
  full = conv_with(kernels, SIX_BY_SIX[None, :, :, None])
  strided = conv_with(kernels, SIX_BY_SIX[None, :, :, None], strides=2)
  assert strided.shape == (1, 2, 2, 2)
  np.testing.assert_array_equal(strided, full[:, ::2, ::2, :])


def test_multi_channel_output_is_sum_of_per_channel_correlations():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
  kernels = rng.normal(size=(3, 2, 3, 4)).astype(np.float32)  # non-square, asymmetric
  out = conv_with(kernels, x)
  assert out.shape == (2, 5, 5, 4)
  for b in range(2):
    for k in range(4):
      per_channel = [signal.correlate2d(x[b, :, :, c], kernels[:, :, c, k], "valid") for c in range(3)]
      np.testing.assert_allclose(out[b, :, :, k], np.sum(per_channel, axis=0), rtol=1e-5, atol=1e-5)
      # Guard the guard: channels must be summed, not averaged or taken one at a time.
      assert not np.allclose(out[b, :, :, k], per_channel[0], atol=1e-3)


def test_padding_and_bias():
  x = jnp.ones((1, 4, 4, 1))
  conv = layers.Conv2D(1, 3, padding="SAME")
  params = {"params": {"kernel": jnp.ones((3, 3, 1, 1)), "bias": jnp.array([0.5])}}
  out = np.asarray(conv.apply(params, x))[0, :, :, 0]
  assert out.shape == (4, 4)
  assert out[0, 0] == 4.5 and out[1, 1] == 9.5  # corner sees 2x2 ones, centre 3x3
  out1 = layers.Conv2D(1, 3, padding=1).apply(params, x)
  np.testing.assert_array_equal(np.asarray(out1)[0, :, :, 0], out)


def test_parameter_sharing_count_does_not_grow_with_image_size():
  conv = layers.Conv2D(8, 3)
  for size in (8, 32):
    v = conv.init(jax.random.key(0), jnp.ones((1, size, size, 3)))
    assert sum(p.size for p in jax.tree.leaves(v)) == 3 * 3 * 3 * 8 + 8


def test_avg_pool_and_flatten_and_dense():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  avg = np.asarray(layers.Pool("avg", 2).apply({}, x))[0, :, :, 0]
  np.testing.assert_allclose(avg, [[2.5, 4.5], [10.5, 12.5]])
  flat = layers.Flatten().apply({}, jnp.ones((2, 3, 3, 4)))
  assert flat.shape == (2, 36)
  dense = layers.Dense(5)
  v = dense.init(jax.random.key(0), flat)
  assert v["params"]["kernel"].shape == (36, 5)
  np.testing.assert_allclose(dense.apply(v, flat), flat @ v["params"]["kernel"], rtol=1e-6)
  with pytest.raises(ValueError, match="Flatten"):
    dense.apply(v, jnp.ones((2, 3, 3, 4)))


@pytest.mark.parametrize(
    "name, fn",
    [("sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("tanh", np.tanh), ("relu", lambda x: np.maximum(0, x))],
)
def test_activations_by_name(name, fn):
  x = np.linspace(-3, 3, 13).astype(np.float32)
  np.testing.assert_allclose(layers.activation(name)(jnp.asarray(x)), fn(x), rtol=1e-6, atol=1e-7)


def test_unknown_activation_and_pool_names():
  with pytest.raises(ConfigError, match="Unknown activation 'swishy'.*relu.*sigmoid.*tanh"):
    layers.activation("swishy")
  with pytest.raises(ValueError, match="pooling kind 'median'"):
    layers.Pool("median").apply({}, jnp.ones((1, 4, 4, 1)))


@pytest.mark.parametrize("shape", [(28, 28), (2, 28, 28), (1, 1, 28, 28, 1)])
def test_wrong_rank_image_batch_is_a_clear_error(shape):
  conv = layers.Conv2D(2, 3)
  with pytest.raises(ValueError, match=r"rank 4 \[B, H, W, C\].*got shape"):
    conv.init(jax.random.key(0), jnp.ones(shape))


def test_conv_block_takes_its_pieces_and_batch_norm_uses_train_flag():
  block = layers.ConvBlock(
      conv=functools.partial(layers.Conv2D, 4, 3, padding="SAME"),
      norm=layers.BatchNorm,
      act="relu",
      pool=functools.partial(layers.Pool, "max", 2),
  )
  x = jax.random.normal(jax.random.key(1), (8, 6, 6, 2)) * 3 + 2
  v = block.init(jax.random.key(0), x)
  assert set(v["params"]) == {"conv", "norm"} and "batch_stats" in v
  y, updates = block.apply(v, x, True, mutable=["batch_stats"])
  assert y.shape == (8, 3, 3, 4) and np.all(np.asarray(y) >= 0)
  # Training updates the running mean; evaluation leaves it alone and differs in output.
  assert not np.allclose(updates["batch_stats"]["norm"]["bn"]["mean"], 0.0)
  y_eval = block.apply(v, x, False)
  assert not np.allclose(y, y_eval)
  # Without norm and pool the block is exactly act(conv(x)).
  plain = layers.ConvBlock(conv=functools.partial(layers.Conv2D, 4, 3), act="tanh")
  pv = plain.init(jax.random.key(0), x)
  ref = jnp.tanh(layers.Conv2D(4, 3).apply({"params": pv["params"]["conv"]}, x))
  np.testing.assert_allclose(plain.apply(pv, x), ref, rtol=1e-6)


@pytest.mark.parametrize("shape,window", [
    ((4, 28, 28, 3), (2, 2)), ((2, 7, 9, 5), (2, 2)), ((2, 9, 10, 3), (3, 3)), ((2, 8, 9, 2), (2, 3)),
])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_tiled_max_pool_equals_flax_max_pool_bit_for_bit_with_ties(shape, window, dtype):
  """Values, gradients (reverse mode) and tangents (forward mode) of `Pool('max')`'s tiled
  formulation are flax's reduce-window max pool's exactly, ties included: inputs rounded to
  halves after a ReLU hold many equal maxima (zeros and equal positives) in a window."""
  import flax.linen as nn

  if jax.default_backend() != "cpu":  # elsewhere XLA's tie rule is not promised to be the same
    pytest.skip("Pool takes the tiled path on the CPU only; benchmarks/pool_speed.py compares "
                "the two on an accelerator")
  r = np.random.default_rng(sum(shape))
  x = jnp.asarray(np.round(r.standard_normal(shape) * 2) / 2, dtype)
  t = jnp.asarray(r.standard_normal(shape), dtype)
  pools = {"tiled": lambda x: layers.Pool("max", window).apply({}, x),
           "flax": lambda x: nn.max_pool(x, window, window)}
  out = {}
  for name, pool in pools.items():
    f = lambda x, pool=pool: jnp.sum(jnp.sin(pool(nn.relu(x))) * jnp.arange(1, 1 + x.shape[-1]))
    y = jax.jit(lambda x, pool=pool: pool(nn.relu(x)))(x)
    out[name] = (y, jax.jit(jax.grad(f))(x), jax.jvp(lambda x, pool=pool: pool(nn.relu(x)), (x,), (t,))[1])
  assert out["tiled"][0].shape == (shape[0], shape[1] // window[0], shape[2] // window[1], shape[3])
  for a, b in zip(out["tiled"], out["flax"], strict=True):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
  ties = (np.asarray(nn.relu(x))[:, : window[0], : window[1]] == 0).sum()
  assert ties > 4  # the inputs do exercise ties


def test_pool_module_takes_the_tiled_path_only_where_it_is_the_same_pool(monkeypatch):
  if jax.default_backend() != "cpu":
    pytest.skip("Pool takes the tiled path on the CPU only")
  calls = []
  monkeypatch.setattr(layers, "tiled_max_pool", lambda x, w: calls.append(w) or x[:, ::2, ::2])
  x = jnp.zeros((1, 8, 8, 1))
  layers.Pool("max", 2).apply({}, x)
  layers.Pool("max", 2, padding=0).apply({}, x)
  assert calls == [(2, 2), (2, 2)]
  layers.Pool("max", 3, strides=2).apply({}, x)  # overlapping windows
  layers.Pool("max", 2, padding="SAME").apply({}, x)
  layers.Pool("max", 2, padding=1).apply({}, x)
  layers.Pool("avg", 2).apply({}, x)
  assert calls == [(2, 2), (2, 2)]
