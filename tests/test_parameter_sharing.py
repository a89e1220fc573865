"""The parameter_sharing suite: one topology as conv, locally connected and dense layers,
scored on the test set and on the test set moved by whole pixels."""

import functools
import itertools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from conftest import REPO

from cnn_jax import benchmark, data
from cnn_jax.benchmark import runner, tables
from cnn_jax.errors import ConfigError
from cnn_jax.models import create_model, model_from_config
from cnn_jax.run import Run
from cnn_jax.shift import shift_images, shifted_accuracy
from cnn_jax.train.config import load_config

# Per recipe: input (H, C), kernel, each layer's (C_in, F), each conv output's H' = W'
# (before pooling) and each pooled output's side.
GEOMETRY = {
    "fashion_mnist": {"size": 28, "k": 5, "layers": [(1, 16), (16, 32)], "conv": [24, 8],
                      "pooled": [12, 4]},
    "digits": {"size": 8, "k": 3, "layers": [(1, 16), (16, 32)], "conv": [8, 4], "pooled": [4, 2]},
}


def expected_params(dataset: str, connectivity: str) -> int:
  """The closed forms: conv k*k*C*F + F; local H'W'(k*k*C*F + F); dense in*out + out."""
  g = GEOMETRY[dataset]
  k = g["k"]
  if connectivity == "conv":
    hidden = sum(k * k * c * f + f for c, f in g["layers"])
  elif connectivity == "local":
    hidden = sum(h * h * (k * k * c * f + f) for (c, f), h in zip(g["layers"], g["conv"]))
  else:
    widths = [g["size"] ** 2] + [p * p * f for (_, f), p in zip(g["layers"], g["pooled"])]
    hidden = sum(i * o + o for i, o in itertools.pairwise(widths))
  last = g["pooled"][-1] ** 2 * g["layers"][-1][1]  # the same in all three variants
  return hidden + last * 10 + 10


def count(tree) -> int:
  return sum(a.size for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("dataset", GEOMETRY)
@pytest.mark.parametrize("connectivity", ["conv", "local", "dense"])
def test_parameter_counts_of_the_recipes_are_the_closed_forms(dataset, connectivity):
  config = load_config(f"configs/parameter_sharing_{dataset}.py",
                       {"model.connectivity": connectivity})
  size = GEOMETRY[dataset]["size"]
  model = model_from_config(config)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 1)))
  assert count(variables["params"]) == expected_params(dataset, connectivity)
  assert set(variables["params"]) == {"layer1", "layer2", "output"}  # the trees line up


def test_the_counts_quoted_in_the_recipes():
  assert [expected_params("fashion_mnist", c) for c in ("conv", "local", "dense")] == [
      18_378, 1_065_994, 2_993_930]
  assert [expected_params("digits", c) for c in ("conv", "local", "dense")] == [
      6_090, 85_770, 50_826]


def test_dense_layers_are_as_wide_as_the_pooled_conv_maps_and_features_are_sown():
  x = jnp.zeros((2, 28, 28, 1))
  shapes = {}
  for c in ("conv", "local", "dense"):
    model = create_model("sharing_net", connectivity=c)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    _, sown = jax.eval_shape(
        functools.partial(model.apply, mutable=["intermediates"]), variables, x)
    shapes[c] = [sown["intermediates"][f"hidden{i}"][0].shape for i in (1, 2)]
  assert shapes["conv"] == shapes["local"] == [(2, 12, 12, 16), (2, 4, 4, 32)]
  assert shapes["dense"] == [(2, 12 * 12 * 16), (2, 4 * 4 * 32)]


def test_unknown_connectivity_lists_the_choices():
  model = create_model("sharing_net", connectivity="shared")
  with pytest.raises(ConfigError, match="Unknown connectivity 'shared'. Choices: conv, local, dense."):
    model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


def test_a_kernel_too_large_for_the_images_names_the_fix():
  model = create_model("sharing_net", connectivity="conv")  # 5x5 VALID on 8x8 digits
  with pytest.raises(ValueError, match="SharingNet needs inputs of at least 16x16.*padding='SAME'"):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


@pytest.mark.parametrize("dy, dx", [(0, 0), (1, 0), (0, -1), (-2, 3), (4, -4), (5, 9), (-9, 0)])
def test_shift_images_is_scipys_nearest_shift_with_zero_fill(dy, dx):
  rng = np.random.default_rng(0)
  images = rng.integers(1, 256, (3, 8, 9, 2), dtype=np.uint8)  # no zeros: the fill shows
  expected = scipy.ndimage.shift(images, (0, dy, dx, 0), order=0, cval=0)
  moved = shift_images(images, dy, dx)
  assert moved.dtype == np.uint8
  np.testing.assert_array_equal(moved, expected)
  floats = images.astype(np.float32) / 7
  np.testing.assert_array_equal(shift_images(floats, dy, dx),
                                scipy.ndimage.shift(floats, (0, dy, dx, 0), order=0, cval=0))


def test_zero_pixels_give_the_plain_accuracy():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (37, 8, 8, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, 37)
  model = create_model("sharing_net", connectivity="local", kernel_size=3, padding="SAME")
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  normalize = data.Normalization.from_images(images)
  plain = np.mean(np.asarray(model.apply(variables, normalize(images))).argmax(-1) == labels)
  for batch_size in (8, 500):  # padded last batch, and one batch
    assert shifted_accuracy(model, variables, normalize, images, labels, 0,
                            batch_size=batch_size) == pytest.approx(plain, abs=1e-12)


class CountBright(nn.Module):
  """Class = the number of pixels brighter than the background (0, 1 or 2): a model that
  is blind to where the pixels are, so only what leaves the frame changes its answer."""

  @nn.compact
  def __call__(self, x, train=False):
    n = jnp.sum(x > -1.0, axis=(1, 2, 3))  # background -2, bright +2 under NORMALIZE
    return -jnp.abs(n[:, None] - jnp.arange(3))


NORMALIZE = data.Normalization(mean=0.5, std=0.25)


@pytest.mark.parametrize("pixels, expected", [(0, 1.0), (1, 8 / 12), (2, 8 / 12), (4, 6 / 12)])
def test_only_what_leaves_the_frame_changes_a_position_blind_model(pixels, expected):
  """Class 0 (empty) survives every move, unless the border were filled in normalised space
  (0 there is a bright pixel). Class 1 (one pixel at (3, 3)) leaves the 8x8 frame only when
  moved 4 up or 4 left. Class 2 (pixels in opposite corners) loses one corner in every
  direction, unless the image wrapped around (a roll) instead of dropping it."""
  images = np.zeros((3, 8, 8, 1), np.uint8)
  images[1, 3, 3] = 255
  images[2, 0, 0] = images[2, 7, 7] = 255
  labels = np.array([0, 1, 2])
  for batch_size in (2, 3):  # with a padded batch (label -1, an empty image) and without
    acc = shifted_accuracy(CountBright(), {}, NORMALIZE, images, labels, pixels,
                           batch_size=batch_size)
    assert acc == pytest.approx(expected, abs=1e-12)


def test_the_experiments_carry_their_connectivity_and_shifts():
  for c in ("conv", "local", "dense"):
    config = benchmark.EXPERIMENTS.get(f"sharing_{c}").config("digits", 1)
    assert config.train.model.connectivity == c and config.train.seed == 1
    assert list(config.shifts) == [1, 2, 4]  # in the record's hash
  assert benchmark.SUITES["parameter_sharing"][:3] == ("sharing_conv", "sharing_local", "sharing_dense")
  for c in ("conv", "dense"):  # the same nets trained on randomly shifted images
    config = benchmark.EXPERIMENTS.get(f"sharing_{c}_shift_aug").config("digits", 0)
    assert config.train.model.connectivity == c
    assert list(config.train.data.augment) == ["translate(max=4)"]


TINY = "test_tiny_parameter_sharing"


def _register_tiny() -> None:
  """The suite with one epoch of the digits recipe (the real one trains 20)."""
  if TINY in benchmark.SUITES:
    return
  for c in ("conv", "local", "dense"):
    real = benchmark.EXPERIMENTS.get(f"sharing_{c}")
    benchmark.register(benchmark.Experiment(
        name=f"tiny_sharing_{c}", kind=real.kind, representation=real.representation,
        recipe=real.recipe, overrides={**real.overrides, "num_epochs": 1}, shifts=real.shifts,
    ))
  benchmark.register_suite(TINY, tuple(f"tiny_sharing_{c}" for c in ("conv", "local", "dense")))


def test_suite_on_digits_reports_sizes_accuracies_and_shifts(tmp_path):
  _register_tiny()
  benchmark.run_suite(TINY, "digits", 1, tmp_path)
  md = (tmp_path / "table.md").read_text()
  assert ("| test accuracy | shift 1 px | shift 2 px | shift 4 px | seeds | published |"
          in md)
  rows = {r["experiment"]: r for r in benchmark.load_table(tmp_path)["rows"]}
  records = {
      r["experiment"]: r
      for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())
  }
  test = data.load_split("digits", "test")
  for c in ("conv", "local", "dense"):
    name = f"tiny_sharing_{c}"
    assert rows[name]["size"] == expected_params("digits", c)
    assert f"| {name} | {rows[name]['representation']} | learned | " \
           f"{expected_params('digits', c):,} params |" in md
    shifted = records[name]["shifted_accuracy"]
    assert sorted(shifted, key=int) == ["1", "2", "4"]
    assert all(0 <= a <= 1 for a in shifted.values())
    assert rows[name]["shifted_accuracy_mean"] == shifted  # one seed: the mean is the value
    # Moved by 0 pixels, the runner's evaluation is the training loop's: the same model,
    # the same normalisation (at most one image may flip on float rounding).
    run = Run(runner.run_dir(tmp_path, name, 0) / "train")
    zero = runner._shifted_accuracy(run, (0,), lambda: (data.load_split("digits", "train"), test))
    assert abs(zero["0"] - records[name]["test_accuracy"]) <= 1 / len(test)
  csv_header = (tmp_path / "table.csv").read_text().splitlines()[0]
  assert csv_header.endswith(
      ",shift_1px_accuracy_mean,shift_2px_accuracy_mean,shift_4px_accuracy_mean")


@pytest.mark.parametrize("suite", ["features_vs_learned_digits", "features_vs_learned_fashion_mnist"])
def test_tables_without_shifts_render_as_before(suite):
  """The committed tables (no shifts) get no shift columns and the same text, down to the
  provenance (whose package list and hashes table.json stores with sorted keys)."""
  folder = REPO / "benchmarks" / "results" / suite
  table = benchmark.load_table(folder)
  md = tables.render_markdown(table)
  assert "shift" not in md and tables.columns(table) == tables.COLUMNS
  assert md.split("## Provenance")[0] == (folder / "table.md").read_text().split("## Provenance")[0]
  assert tables.render_csv(table) == (folder / "table.csv").read_text()
