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
from conftest import REPO, needs_fashion_mnist, subprocess_env

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


@pytest.mark.parametrize("orientations,ppc", [(9, 4), (8, 4), (6, 2)])
def test_hog_transform_sqrt_matches_skimage(fashion, digits, orientations, ppc):
  """Square-root gradients of uint8 images land on bin edges exactly (e.g. sqrt(3) - 0 vs
  1 - 0 is 60 degrees): our bins follow scikit-image's float64 there (within 1e-4; ~1e-6)."""
  kw = dict(orientations=orientations, pixels_per_cell=(ppc, ppc), cells_per_block=(2, 2),
            block_norm="L2-Hys")
  for images in (fashion, digits):
    if images.shape[1] < 4 * ppc:
      continue
    ours = features.extract("hog", images, transform_sqrt=True, **kw)
    np.testing.assert_allclose(ours, _hog_ref(images, transform_sqrt=True, **kw), rtol=0,
                               atol=1e-4)


def test_hog_transform_sqrt_colour():
  rgb = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
  ref = np.stack([skimage_feature.hog(im, 9, (4, 4), (2, 2), channel_axis=-1,
                                      transform_sqrt=True) for im in rgb])
  np.testing.assert_allclose(features.extract("hog", rgb, transform_sqrt=True), ref, rtol=0,
                             atol=1e-4)


def test_hog_on_float_images_differs_only_at_bin_edges(digits):
  """Float images: float32 gradients and arctan2. Random values sit off the bin edges and
  match to 1e-6; integer images scaled to [0, 1] put gradients exactly on edges (45 and 90
  degrees with 8 orientations), where float32 and float64 can pick neighbouring bins. As
  uint8 the same images match."""
  kw = dict(orientations=8, pixels_per_cell=(2, 2), cells_per_block=(2, 2), block_norm="L1")
  rng = np.random.default_rng(0)
  random = rng.random((16, 8, 8, 1)).astype(np.float32)
  np.testing.assert_allclose(features.extract("hog", random, **kw),
                             _hog_ref(random.astype(np.float64), **kw), rtol=0, atol=1e-6)
  scaled = (digits / 255.0).astype(np.float32)
  worst = np.abs(features.extract("hog", scaled, **kw) - _hog_ref(scaled.astype(np.float64),
                                                                   **kw)).max(axis=1)
  assert (worst > 1e-3).any() and np.median(worst) < 1e-6
  np.testing.assert_allclose(features.extract("hog", digits, **kw), _hog_ref(digits, **kw),
                             rtol=0, atol=1e-6)


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


LBP_METHODS = ("default", "ror", "uniform", "nri_uniform", "var")
LBP_GEOMETRIES = [(4, 1), (8, 1), (8, 2), (16, 2), (24, 3)]


def _tie_images(h: int = 28, w: int = 28) -> np.ndarray:
  """uint8 images where neighbours often equal the centre up to float64 rounding: ramps
  (linear ramps tie every interpolated neighbour), few-level noise, flat blocks."""
  rng = np.random.default_rng(0)
  r, c = np.mgrid[:h, :w]
  ims = [((a * r + b * c + 128) % 256) for a, b in [(1, 1), (1, -1), (2, 3), (1, 2), (0, 1)]]
  ims += [np.clip(9 * (a * r + b * c), 0, 255) for a, b in [(1, 1), (2, 1), (1, -1)]]
  ims += [base + rng.integers(0, levels, (h, w)) for levels in (2, 3) for base in (0, 100, 252)]
  ims += [np.kron(rng.integers(0, 4, (h // 4 + 1, w // 4 + 1)) * 85, np.ones((4, 4)))[:h, :w]]
  return np.stack(ims).astype(np.uint8)


def _lbp_ref(images, points, radius, method):
  return np.stack([skimage_feature.local_binary_pattern(im, points, radius, method)
                   for im in images])


def _assert_var_close(ours, ref):
  """`var`: ours is float32 from exact integer neighbour values, scikit-image's is float64
  `(sum t^2 - (sum t)^2 / P) / P` (cancellation: ~1e-10 absolute). NaN = zero variance; the
  few where scikit-image's rounding leaves a tiny nonzero (or zero) count as equal."""
  assert ours.dtype == np.float32
  np.testing.assert_allclose(np.nan_to_num(ours), np.nan_to_num(ref), rtol=1e-5, atol=1e-6)


@needs_fashion_mnist
@pytest.mark.parametrize("points,radius", LBP_GEOMETRIES)
def test_lbp_matches_skimage_exactly_on_uint8(fashion, points, radius):
  """Every method, codes equal to scikit-image's (var: within float32, see above), on real
  images and on images full of float64 ties."""
  images = np.concatenate([fashion[:16, ..., 0], _tie_images()])

  @jax.jit
  def all_methods(x):
    return {m: features.lbp_codes(x, m, points, radius) for m in LBP_METHODS}

  ours = jax.device_get(all_methods(images))
  for method in LBP_METHODS:
    ref = _lbp_ref(images, points, radius, method)
    if method == "var":
      _assert_var_close(ours[method], ref)
    else:
      np.testing.assert_array_equal(ours[method], ref, err_msg=method)


def _ideal_default_codes(images, points, radius):
  """`default` codes from exact decimal weights (integers / 1e5, no float64), ties as >=."""
  from cnn_jax.features.lbp_sampling import SCALE, offsets

  x = np.pad(images.astype(np.int64), ((0, 0), (4, 4), (4, 4)))
  h, w = images.shape[1:]

  def shifted(dr, dc):
    return x[:, 4 + dr : 4 + dr + h, 4 + dc : 4 + dc + w]

  code = np.zeros((len(images), h, w), np.int64)
  for i, (dr, dc) in enumerate(zip(*offsets(points, radius), strict=True)):
    fr, fc = round(dr * SCALE) % SCALE, round(dc * SCALE) % SCALE
    numerator = -(SCALE**2) * shifted(0, 0)
    for r, wr in ((int(np.floor(dr)), SCALE - fr), (int(np.ceil(dr)), fr)):
      for c, wc in ((int(np.floor(dc)), SCALE - fc), (int(np.ceil(dc)), fc)):
        numerator = numerator + wr * wc * shifted(r, c)
    code += (numerator >= 0).astype(np.int64) << i
  return code


@pytest.mark.parametrize("points,radius", [(8, 1), (16, 2), (24, 3)])
def test_lbp_ties_follow_skimage_float64_rounding(points, radius):
  """The tie images are sharp: with exact (decimal) weights their codes differ from
  scikit-image's, whose float64 rounding decides ties; ours follow the rounding."""
  images = _tie_images()
  ref = _lbp_ref(images, points, radius, "default")
  assert (_ideal_default_codes(images, points, radius) != ref).any()
  ours = np.asarray(jax.jit(features.lbp_codes, static_argnums=(1, 2, 3))(
      images, "default", points, radius))
  np.testing.assert_array_equal(ours, ref)


def test_lbp_flat_patch_tie_follows_skimage_float64_rounding():
  """Flat patches with a diagonal equal to the centre are float64 ties in scikit-image."""
  rng = np.random.default_rng(1)
  img = np.repeat(np.repeat(rng.integers(0, 256, (6, 6)), 3, 0), 3, 1).astype(np.uint8)
  img[5:8, 5:8] = 37
  img[6, 7], img[7, 6] = 40, 34  # axial pixels sum to twice the centre
  ref = skimage_feature.local_binary_pattern(img, 8, 1, "uniform")
  np.testing.assert_array_equal(np.asarray(features.lbp_codes(img[None])[0]), ref)


def _neighbour_values(image, points, radius):
  """scikit-image's float64 bilinear neighbour values `[P, H, W]` (numpy, outside = 0)."""
  from cnn_jax.features.lbp_sampling import offsets

  h, w = image.shape
  x = np.pad(image.astype(np.float64), 5)
  rows, cols = np.arange(h, dtype=np.float64)[:, None], np.arange(w, dtype=np.float64)[None, :]
  out = []
  for dr, dc in zip(*offsets(points, radius), strict=True):
    r, c = rows + dr + 0 * cols, cols + dc + 0 * rows
    r0, c0, r1, c1 = (np.floor(r).astype(int), np.floor(c).astype(int), np.ceil(r).astype(int),
                      np.ceil(c).astype(int))
    fr, fc = r - r0, c - c0
    top = (1 - fc) * x[r0 + 5, c0 + 5] + fc * x[r0 + 5, c1 + 5]
    bottom = (1 - fc) * x[r1 + 5, c0 + 5] + fc * x[r1 + 5, c1 + 5]
    out.append((1 - fr) * top + fr * bottom)
  return np.stack(out)


@pytest.mark.filterwarnings("ignore:Applying `local_binary_pattern` to floating-point")
def test_lbp_on_float_images_differs_only_within_float32_rounding_of_the_centre(digits):
  """Float images are interpolated in float32: codes equal scikit-image's except where a
  neighbour is within float32 rounding (1e-6 relative) of the centre; for integer-valued
  float images that means exactly at ties, where uint8 input is exact."""
  rng = np.random.default_rng(0)
  cases = [rng.random((6, 20, 20)), rng.random((6, 20, 20)).astype(np.float32) * 255,
           digits[:32, ..., 0].astype(np.float32)]
  for images in cases:
    ref = _lbp_ref(images, 16, 2, "default")
    ours = np.asarray(features.lbp_codes(images, "default", 16, 2))
    for n in np.unique(np.argwhere(ours != ref)[:, 0]):
      near = np.abs(_neighbour_values(images[n], 16, 2) - images[n]).min(axis=0)
      bad = ours[n] != ref[n]
      assert (near[bad] <= 1e-6 * np.maximum(1.0, np.abs(images[n][bad]))).all()
    assert np.mean(ours == ref) > 0.99
  uint8 = digits[:32, ..., 0]
  np.testing.assert_array_equal(np.asarray(features.lbp_codes(uint8, "default", 16, 2)),
                                _lbp_ref(uint8, 16, 2, "default"))


@pytest.mark.parametrize("method,bins", [("uniform", 10), ("default", 256), ("ror", 36),
                                         ("nri_uniform", 59), ("var", 1)])
def test_lbp_histograms_are_per_cell_code_frequencies(digits, method, bins):
  f = features.extract("lbp", digits, pixels_per_cell=4, method=method)
  assert f.shape == (len(digits), 2 * 2 * bins)
  # The top-left cell's codes come from the whole image (neighbours cross the cell border).
  full = skimage_feature.local_binary_pattern(digits[0, ..., 0], 8, 1, method)[:4, :4]
  if method == "var":
    np.testing.assert_allclose(f[0, 0], np.nan_to_num(full).mean(), rtol=1e-5)
    return
  np.testing.assert_allclose(f.reshape(len(digits), 4, bins).sum(-1), 1.0, atol=1e-6)
  if method == "ror":
    full = features.lbp._ror_classes(8)[full.astype(int)]
  counts = np.bincount(full.ravel().astype(int), minlength=bins)
  np.testing.assert_allclose(f[0, :bins], counts / 16)


def test_lbp_default_extractor_features_are_unchanged(digits):
  """The default (8, 1) uniform histograms, as committed benchmark results were computed:
  frequencies k / 16 of scikit-image's codes, summed per cell (digits, 4x4 cells)."""
  f = features.extract("lbp", digits, pixels_per_cell=4)
  codes = _lbp_ref(digits[..., 0], 8, 1, "uniform").astype(int)
  cells = codes.reshape(len(digits), 2, 4, 2, 4).transpose(0, 1, 3, 2, 4).reshape(-1, 16)
  ref = np.stack([np.bincount(c, minlength=10) for c in cells]).reshape(len(digits), -1)
  np.testing.assert_array_equal(f, (ref / 16).astype(np.float32))


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
  # Its own process, on the CPU also on a GPU machine: the CPU device count is fixed when
  # JAX starts.
  r = subprocess.run([sys.executable, "-c", _MULTI_DEVICE], cwd=REPO, capture_output=True,
                     text=True, timeout=300, env=subprocess_env(JAX_PLATFORMS="cpu"))
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
  with pytest.raises(ConfigError, match="transform_sqrt must be True or False"):
    features.make_extractor({"name": "hog", "transform_sqrt": "yes"}, image_shape=shape)
  with pytest.raises(ConfigError, match="Unknown LBP method 'riu2'.*nri_uniform"):
    features.make_extractor({"name": "lbp", "method": "riu2"}, image_shape=shape)
  with pytest.raises(ConfigError, match="points must be a positive int"):
    features.make_extractor({"name": "lbp", "points": 0}, image_shape=shape)
  with pytest.raises(ConfigError, match="radius must be a positive number"):
    features.make_extractor({"name": "lbp", "radius": -1}, image_shape=shape)
  with pytest.raises(ConfigError, match="do not fit int32.*'uniform'"):
    features.make_extractor({"name": "lbp", "method": "default", "points": 32},
                            image_shape=shape)
  with pytest.raises(ConfigError, match="1,048,576 features.*larger pixels_per_cell"):
    features.make_extractor({"name": "lbp", "method": "default", "points": 16},
                            image_shape=shape)
  with pytest.raises(ConfigError, match="uint8 .exact. or float"):
    features.lbp_codes(np.zeros((1, 8, 8), np.int16))
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
