"""Feature extractors against their oracles (scikit-image) on real images, and bad input."""

import math
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest

from cnn_jax import features
from cnn_jax.data import load_split
from cnn_jax.errors import ConfigError
from cnn_jax.registry import UnknownNameError
from conftest import REPO, needs_fashion_mnist

import skimage.feature as skimage_feature  # noqa: E402  (the oracle; a test dependency)
import skimage.filters as skimage_filters  # noqa: E402


@pytest.fixture(scope="module")
def fashion():
  return load_split("fashion_mnist", "test").images[:64]


@pytest.fixture(scope="module")
def digits():
  return load_split("digits", "test").images[:64]


def _hog_ref(images, **kw):
  return np.stack([skimage_feature.hog(im[..., 0], **kw) for im in images])


HOG_CASES = [
    dict(orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys"),
    dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3), block_norm="L2-Hys"),
    dict(orientations=8, pixels_per_cell=(7, 5), cells_per_block=(2, 3), block_norm="L1"),
]


@needs_fashion_mnist
@pytest.mark.parametrize("kw", HOG_CASES)
def test_hog_matches_skimage_on_fashion_mnist(fashion, kw):
  ours = features.extract("hog", fashion, **kw)
  ref = _hog_ref(fashion, **kw)
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("orientations", [8, 9])
def test_hog_matches_skimage_on_digits(digits, orientations):
  """8 orientations put bin edges at 45 and 90 degrees, where integer gradients tie."""
  kw = dict(orientations=orientations, pixels_per_cell=(2, 2), cells_per_block=(2, 2),
            block_norm="L2-Hys")
  np.testing.assert_allclose(features.extract("hog", digits, **kw), _hog_ref(digits, **kw),
                             rtol=0, atol=1e-4)


def test_hog_colour_picks_the_strongest_channel():
  rgb = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
  ref = np.stack([skimage_feature.hog(im, 9, (4, 4), (2, 2), channel_axis=-1) for im in rgb])
  np.testing.assert_allclose(features.extract("hog", rgb), ref, rtol=0, atol=1e-4)


@needs_fashion_mnist
@pytest.mark.parametrize("wrong", [dict(cells_per_block=(3, 3)), dict(block_norm="L2"),
                                   dict(block_norm="L1"), dict(orientations=8)])
def test_hog_oracle_catches_a_wrong_parameter(fashion, wrong):
  """The comparison above is sharp: one parameter off and it fails."""
  ref = _hog_ref(fashion, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2),
                 block_norm="L2-Hys")
  kw = dict(orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys")
  ours = features.extract("hog", fashion, **{**kw, **wrong})
  assert ours.shape != ref.shape or np.abs(ours - ref).max() > 1e-2


@needs_fashion_mnist
@pytest.mark.parametrize("method", ["uniform", "default"])
def test_lbp_codes_match_skimage_exactly(fashion, digits, method):
  for images in (fashion, digits):
    ours = np.asarray(jax.jit(features.lbp_codes, static_argnums=1)(images[..., 0], method))
    ref = np.stack([skimage_feature.local_binary_pattern(im[..., 0], 8, 1, method)
                    for im in images])
    np.testing.assert_array_equal(ours, ref)


def test_lbp_ties_follow_skimage_float64_rounding():
  """Flat patches with a diagonal equal to the centre are float64 ties in scikit-image."""
  rng = np.random.default_rng(1)
  img = np.repeat(np.repeat(rng.integers(0, 256, (6, 6)), 3, 0), 3, 1).astype(np.uint8)
  img[5:8, 5:8] = 37
  img[6, 7], img[7, 6] = 40, 34  # axial pixels sum to twice the centre
  ref = skimage_feature.local_binary_pattern(img, 8, 1, "uniform")
  np.testing.assert_array_equal(np.asarray(features.lbp_codes(img[None])[0]), ref)


def test_lbp_histograms_are_per_cell_code_frequencies(digits):
  f = features.extract("lbp", digits, pixels_per_cell=4)
  assert f.shape == (len(digits), 2 * 2 * 10)
  np.testing.assert_allclose(f.reshape(len(digits), 4, 10).sum(-1), 1.0, atol=1e-6)
  codes = skimage_feature.local_binary_pattern(digits[0, :4, :4, 0], 8, 1, "uniform")
  # The top-left cell's codes come from the whole image (neighbours cross the cell border).
  full = skimage_feature.local_binary_pattern(digits[0, ..., 0], 8, 1, "uniform")[:4, :4]
  np.testing.assert_allclose(f[0, :10], np.bincount(full.ravel().astype(int), minlength=10) / 16)
  del codes


@pytest.mark.parametrize("frequency,theta,bandwidth", [(0.1, 0.0, 1.0), (0.25, math.pi / 3, 1.0),
                                                       (0.05, 2.0, 0.7), (0.4, math.pi / 4, 1.5)])
def test_gabor_kernels_match_skimage(frequency, theta, bandwidth):
  ref = skimage_filters.gabor_kernel(frequency, theta=theta, bandwidth=bandwidth)
  ours = features.gabor_kernel(frequency, theta, bandwidth)
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


@needs_fashion_mnist
def test_gabor_filtering_matches_skimage_gabor(fashion):
  from cnn_jax.features.gabor import gabor_magnitudes

  bank, specs = features.gabor_bank((0.1, 0.3), 4)
  ours = np.asarray(gabor_magnitudes(fashion[:4], bank))
  for n in range(4):
    for j, (f, t) in enumerate(specs):
      re, im = skimage_filters.gabor(fashion[n, ..., 0] / 255.0, f, theta=t)
      np.testing.assert_allclose(ours[n, ..., j], np.hypot(re, im), atol=1e-5)


def test_every_extractor_is_batched_jittable_and_deterministic(digits):
  train = load_split("digits", "train").images
  small = {"kmeans": dict(num_centroids=8, num_patches=500, patch_size=3, iterations=3),
           "random_conv": dict(features=8), "gabor": dict(frequencies=(0.25, 0.4), pool=4),
           "lbp": dict(pixels_per_cell=4), "hog": dict(pixels_per_cell=2)}
  for name in ("raw", "hog", "lbp", "gabor", "random_conv", "kmeans"):
    config = ml_collections.ConfigDict({"name": name, **small.get(name, {})})
    fn = features.make_extractor(config, image_shape=(8, 8, 1), train_images=train)
    a = np.asarray(jax.jit(fn)(digits[:16]))
    b = features.apply_in_batches(fn, digits[:16], batch_size=5)
    assert a.ndim == 2 and a.shape[0] == 16 and np.isfinite(a).all(), name
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)
    fn2 = features.make_extractor(config, image_shape=(8, 8, 1), train_images=train)
    np.testing.assert_array_equal(a, np.asarray(jax.jit(fn2)(digits[:16])), err_msg=name)


_MULTI_DEVICE = textwrap.dedent("""
    import jax, numpy as np
    jax.config.update("jax_num_cpu_devices", 3)
    from cnn_jax import features
    from cnn_jax.data import load_split
    train = load_split("digits", "train").images
    devices = jax.local_devices()
    assert len(devices) == 3, devices
    for name, params in [("hog", dict(pixels_per_cell=2)), ("kmeans", dict(num_centroids=8,
                         num_patches=500, patch_size=3, iterations=3))]:
      fn = features.make_extractor(dict(name=name, **params), image_shape=(8, 8, 1),
                                   train_images=train)
      one = features.apply_in_batches(fn, train[:23], batch_size=4, devices=devices[:1])
      three = features.apply_in_batches(fn, train[:23], batch_size=4)
      assert one.shape[0] == 23
      np.testing.assert_array_equal(one, three, err_msg=name)
    print("ok")
""")


def test_batches_spread_over_devices_give_identical_features(tfds_dir):
  # Its own process: the CPU device count is fixed when JAX starts.
  r = subprocess.run([sys.executable, "-c", _MULTI_DEVICE], cwd=REPO, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_kmeans_shapes_and_triangle_sparsity(digits):
  train = load_split("digits", "train").images
  f = features.extract("kmeans", digits, train_images=train, num_centroids=16, num_patches=2000,
                       patch_size=3, iterations=5)
  assert f.shape == (len(digits), 4 * 16)
  assert (f >= 0).all()  # triangle activations, sum-pooled
  assert len(np.unique(f.round(4), axis=0)) == len(f)


def test_cnn_extractor_from_memory(digits):
  from cnn_jax.models import create_model

  model = create_model("lenet5")
  variables = model.init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))
  train = load_split("digits", "train").images
  fn = features.make_extractor({"name": "cnn", "layer": "C5"}, image_shape=(8, 8, 1),
                               train_images=train, model=model, variables=variables)
  assert np.asarray(fn(digits[:4])).shape == (4, 120)
  with pytest.raises(ConfigError, match="no layer 'F7'.*C1"):
    features.make_extractor({"name": "cnn", "layer": "F7"}, image_shape=(8, 8, 1),
                            train_images=train, model=model, variables=variables)
  rgb = np.zeros((4, 8, 8, 3), np.uint8)  # a grey model on RGB images: one line that says so
  with pytest.raises(ConfigError, match=r"does not take these 8x8x3 images: .*\(5, 5, 1, 6\)"):
    features.make_extractor({"name": "cnn", "layer": "C5"}, image_shape=(8, 8, 3),
                            train_images=rgb, model=model, variables=variables)


def test_bad_names_and_parameters_fail_clearly():
  shape = (28, 28, 1)
  with pytest.raises(UnknownNameError, match="'sift'.*hog.*lbp"):
    features.make_extractor({"name": "sift"}, image_shape=shape)
  with pytest.raises(ConfigError, match="cells larger|need at least 32x32"):
    features.make_extractor({"name": "hog", "pixels_per_cell": 16}, image_shape=shape)
  with pytest.raises(ConfigError, match="no parameter.*cell_size.*pixels_per_cell"):
    features.make_extractor({"name": "hog", "cell_size": 4}, image_shape=shape)
  with pytest.raises(ConfigError, match="block_norm"):
    features.make_extractor({"name": "hog", "block_norm": "L3"}, image_shape=shape)
  with pytest.raises(ConfigError, match="larger than the 28x28"):
    features.make_extractor({"name": "lbp", "pixels_per_cell": 29}, image_shape=shape)
  with pytest.raises(ConfigError, match="points=8, radius=1"):
    features.make_extractor({"name": "lbp", "radius": 2}, image_shape=shape)
  with pytest.raises(ConfigError, match="patch_size"):
    features.make_extractor({"name": "kmeans", "patch_size": 28}, image_shape=shape,
                            train_images=np.zeros((4, 28, 28, 1), np.uint8))
  with pytest.raises(ConfigError, match="train_images"):
    features.make_extractor({"name": "kmeans"}, image_shape=shape)
  with pytest.raises(ConfigError, match="--workdir"):
    features.make_extractor({"name": "cnn"}, image_shape=shape,
                            train_images=np.zeros((4, 28, 28, 1), np.uint8))
  with pytest.raises(ConfigError, match="frequencies"):
    features.make_extractor({"name": "gabor", "frequencies": (0.0,)}, image_shape=shape)
