import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.errors import ConfigError
from cnn_jax.models import MODELS, create_model


def n_params(variables) -> int:
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


def test_lenet5_has_61706_parameters_and_layer_shapes():
  model = create_model("lenet5")
  v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
  assert n_params(v) == 61_706
  p = v["params"]
  assert p["c1"]["conv"]["kernel"].shape == (5, 5, 1, 6)
  assert p["c3"]["conv"]["kernel"].shape == (5, 5, 6, 16)  # full C3 connections
  assert p["c5"]["conv"]["kernel"].shape == (5, 5, 16, 120)
  assert p["f6"]["kernel"].shape == (120, 84)
  assert p["out"]["kernel"].shape == (84, 10)


def test_lenet5_pads_28_to_32_and_exposes_named_features():
  model = create_model("lenet5", activation="relu", pool="max")
  x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
  v = model.init(jax.random.key(0), x)
  logits, state = model.apply(v, x, mutable=["intermediates"])
  assert logits.shape == (3, 10)
  shapes = {k: t[0].shape for k, t in state["intermediates"].items()}
  assert shapes == {
      "C1": (3, 28, 28, 6), "S2": (3, 14, 14, 6), "C3": (3, 10, 10, 16),
      "S4": (3, 5, 5, 16), "C5": (3, 1, 1, 120), "F6": (3, 84),
  }
  # Padding 28 -> 32 is the same as feeding the padded image.
  padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  np.testing.assert_allclose(model.apply(v, padded), logits, rtol=1e-5, atol=1e-6)


def test_lenet5_rejects_inputs_larger_than_32():
  model = create_model("lenet5")
  with pytest.raises(ValueError, match="up to 32x32, got 64x64"):
    model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))


def test_simple_cnn_shapes_params_and_batch_norm():
  model = create_model("simple_cnn", num_classes=7, conv_features=(8, 16), dense_features=(32,))
  x = jnp.zeros((2, 28, 28, 1))
  v = model.init(jax.random.key(0), x)
  # conv 3*3*1*8+8, conv 3*3*8*16+16, dense 7*7*16*32+32, out 32*7+7
  assert n_params(v) == 80 + 1168 + 25120 + 231
  assert model.apply(v, x).shape == (2, 7)
  bn = create_model("simple_cnn", batch_norm=True, conv_features=(8,), dense_features=())
  vb = bn.init(jax.random.key(0), x)
  assert "batch_stats" in vb and n_params(vb) == 80 + 16 + 14 * 14 * 8 * 10 + 10


def test_bfloat16_compute_keeps_float32_params():
  model = create_model("lenet5", dtype="bfloat16")
  v = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))
  _, state = model.apply(v, jnp.ones((1, 28, 28, 1)), mutable=["intermediates"])
  assert state["intermediates"]["C1"][0].dtype == jnp.bfloat16


def test_unknown_model_name_lists_known_ones():
  with pytest.raises(ConfigError, match=r"Unknown model 'lenet6'. Known models: .*lenet5.*simple_cnn"):
    create_model("lenet6")
  assert {"lenet5", "simple_cnn"} <= set(MODELS.names())


def test_unknown_model_option_lists_valid_options():
  with pytest.raises(ConfigError, match="no option\\(s\\) widht.*activation"):
    create_model("lenet5", widht=3)
