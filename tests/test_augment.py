"""Augmentation ops: pure functions of (image, key), registered by name, applied in the train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from cnn_jax.data import augment
from cnn_jax.errors import ConfigError


def _image(h=12, w=10, c=2, seed=0):
  return np.random.default_rng(seed).integers(1, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("dy,dx", [(0, 0), (1, -2), (-3, 3), (2, 0)])
def test_shift_equals_scipy_with_zero_fill(dy, dx):
  x = _image()
  got = np.asarray(augment.shift_image(jnp.asarray(x), jnp.int32(dy), jnp.int32(dx), 3))
  np.testing.assert_array_equal(got, ndimage.shift(x, (dy, dx, 0), order=0, cval=0))


def test_translate_is_one_of_the_allowed_shifts_and_random_crop_is_the_same():
  x = _image()
  seen = set()
  for i in range(40):
    key = jax.random.key(i)
    got = np.asarray(augment.translate(jnp.asarray(x), key, max=2))
    match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
             if np.array_equal(got, ndimage.shift(x, (dy, dx, 0), order=0, cval=0))]
    assert len(match) == 1
    seen.add(match[0])
    np.testing.assert_array_equal(got, np.asarray(augment.random_crop(jnp.asarray(x), key, pad=2)))
  assert len(seen) >= 15  # the shifts are spread over the 25 possible ones


def test_flip_and_cutout():
  x = jnp.asarray(_image())
  key = jax.random.key(0)
  np.testing.assert_array_equal(augment.flip_lr(x, key, p=1.0), x[:, ::-1])
  np.testing.assert_array_equal(augment.flip_lr(x, key, p=0.0), x)
  for i in range(20):
    out = np.asarray(augment.cutout(x, jax.random.key(i), size=4))
    zeroed = (out == 0).all(-1)
    assert 4 <= zeroed.sum() <= 16  # a 4x4 square, clipped at the border
    rows, cols = np.nonzero(zeroed)
    assert rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4
    np.testing.assert_array_equal(out[~zeroed], np.asarray(x)[~zeroed])


def test_batch_augmentation_is_a_function_of_key_and_global_index():
  fn = augment.build(["random_crop(pad=3)", "flip_lr", "cutout(size=3)"])
  x = jnp.asarray(np.stack([_image(seed=s) for s in range(6)]))
  a = fn(x, jax.random.key(1))
  np.testing.assert_array_equal(a, fn(x, jax.random.key(1)))
  assert not np.array_equal(a, fn(x, jax.random.key(2)))
  # A device holding examples 2..3 of the global batch augments them as one device would.
  np.testing.assert_array_equal(a[2:4], fn(x[2:4], jax.random.key(1), 2))
  assert augment.build([]) is None


def test_bad_specs_are_clear_errors():
  with pytest.raises(ConfigError, match="Unknown augmentation 'crop'.*random_crop"):
    augment.build(["crop(pad=4)"])
  with pytest.raises(ConfigError, match="'random_crop' has no parameter.*padding; its parameters: pad"):
    augment.build(["random_crop(padding=4)"])
  with pytest.raises(ConfigError, match="write name=value"):
    augment.build(["random_crop(4)"])
  with pytest.raises(ConfigError, match="max must be >= 0"):
    augment.build(["translate(max=-1)"])


def test_training_with_augmentation_is_deterministic_and_differs_from_without(tmp_path):
  from cnn_jax.train import train_and_evaluate
  from cnn_jax.train.config import load_config

  def run(name, augment_specs):
    config = load_config("configs/simple_cnn_digits.py", {
        "num_epochs": 1, "batch_size": 64, "data.augment": augment_specs,
        "checkpoint_every_steps": 0})
    train_and_evaluate(config, str(tmp_path / name))
    return (tmp_path / name / "metrics.jsonl").read_text()

  a = run("a", ("translate(max=1)",))
  assert a == run("b", ("translate(max=1)",))
  assert a != run("c", ())
