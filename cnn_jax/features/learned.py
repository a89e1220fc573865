"""Representations that are not designed by hand: raw pixels, random convolutions,
k-means features (Coates, Lee & Ng 2011), with what each fits on the training split."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data.pipeline import Normalization
from cnn_jax.errors import ConfigError
from cnn_jax.features.base import EXTRACTORS, FeatureFn, require_train_images, to_float


# ----------------------------------------------------------------------------- raw pixels
def raw_features(
    images: jax.Array, *, normalize: Normalization = Normalization(0.0, 1.0)
) -> jax.Array:
  """`[B, H, W, C]` -> `[B, H W C]`: `(pixel / 255 - mean) / std`."""
  x = normalize(images)
  return x.reshape(x.shape[0], -1)


@EXTRACTORS.register("raw")
def build_raw(*, image_shape, train_images=None, standardize: bool = True) -> FeatureFn:
  """Standardised pixels (mean and std of all training pixels, as the CNNs are fed)."""
  del image_shape
  if not standardize:
    return raw_features
  train = require_train_images("raw", train_images)
  return functools.partial(raw_features, normalize=Normalization.from_images(train))


# ------------------------------------------------------------------- random conv features
def random_conv_features(
    images: jax.Array, *, kernel: jax.Array, normalize: Normalization, pool: int, pool_type: str
) -> jax.Array:
  """Fixed conv ('SAME') -> ReLU -> `pool`x`pool` pooling (stride `pool`), flattened."""
  x = normalize(images)
  y = jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  y = jax.nn.relu(y)
  window = (1, pool, pool, 1)
  if pool_type == "max":
    y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, window, window, "VALID")
  else:
    y = jax.lax.reduce_window(y, 0.0, jax.lax.add, window, window, "VALID") / (pool * pool)
  return y.reshape(y.shape[0], -1)


@EXTRACTORS.register("random_conv")
def build_random_conv(
    *,
    image_shape,
    train_images=None,
    features: int = 64,
    kernel_size: int = 5,
    pool: int = 4,
    pool_type: str = "max",
    seed: int = 0,
) -> FeatureFn:
  """A random, never-trained conv layer (Jarrett et al. 2009; Saxe et al. 2011): zero-mean,
  unit-norm filters from `jax.random.key(seed)`; defaults give 7x7x64 = 3,136 features."""
  h, w, c = image_shape
  if kernel_size < 1 or kernel_size > min(h, w):
    raise ConfigError(f"kernel_size={kernel_size} must be between 1 and the image size {h}x{w}.")
  if pool < 1 or pool > min(h, w):
    raise ConfigError(f"pool={pool} must be between 1 and the image size {h}x{w}.")
  if pool_type not in ("max", "avg"):
    raise ConfigError(f"pool_type must be 'max' or 'avg', got {pool_type!r}.")
  if features < 1:
    raise ConfigError(f"features must be >= 1, got {features}.")
  k = jax.random.normal(jax.random.key(seed), (kernel_size, kernel_size, c, features))
  k = k - k.mean(axis=(0, 1, 2), keepdims=True)
  k = k / jnp.linalg.norm(k.reshape(-1, features), axis=0)
  train = require_train_images("random_conv", train_images)
  return functools.partial(
      random_conv_features, kernel=k, normalize=Normalization.from_images(train),
      pool=pool, pool_type=pool_type,
  )


# ---------------------------------------------------------------------- k-means features
@dataclasses.dataclass(frozen=True)
class KMeansModel:
  """What Coates et al.'s pipeline learns: the ZCA transform and the centroids."""

  patch_size: int
  patch_mean: np.ndarray  # [D] (D = patch_size^2 C)
  whiten: np.ndarray  # [D, D]
  centroids: np.ndarray  # [K, D]


def _patches(x: jax.Array, p: int) -> jax.Array:
  """`[B, H, W, C]` -> every p x p patch, stride 1: `[B, H-p+1, W-p+1, p p C]`."""
  return jax.lax.conv_general_dilated_patches(
      jnp.moveaxis(x, -1, 1), (p, p), (1, 1), "VALID"
  ).transpose(0, 2, 3, 1)


def _normalize_patches(v: jax.Array) -> jax.Array:
  # Per-patch brightness and contrast normalisation (0..255 scale; +10 as in the paper).
  v = v - v.mean(-1, keepdims=True)
  return v / jnp.sqrt(v.var(-1, keepdims=True) + 10.0)


@functools.partial(jax.jit, static_argnames=("k", "iterations"))
def _lloyd(data: jax.Array, key: jax.Array, k: int, iterations: int) -> jax.Array:
  """Plain k-means (init: k distinct random points); an empty cluster keeps its centroid."""
  cent = data[jax.random.choice(key, data.shape[0], (k,), replace=False)]
  sq = jnp.sum(data * data, 1)

  def step(_, cent):
    d = sq[:, None] - 2 * data @ cent.T + jnp.sum(cent * cent, 1)[None]
    assign = jax.nn.one_hot(jnp.argmin(d, 1), k, dtype=data.dtype)
    counts = assign.sum(0)
    sums = assign.T @ data
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], cent)

  return jax.lax.fori_loop(0, iterations, step, cent)


def fit_kmeans(
    train_images: np.ndarray,
    *,
    num_centroids: int,
    patch_size: int,
    num_patches: int,
    iterations: int,
    zca_epsilon: float,
    seed: int,
) -> KMeansModel:
  """Random patches of the training split -> normalise -> ZCA -> k-means centroids."""
  key = jax.random.key(seed)
  k_img, k_pos, k_init = jax.random.split(key, 3)
  n, h, w, c = train_images.shape
  p = patch_size
  idx = jax.random.randint(k_img, (num_patches,), 0, n)
  pos = jax.random.randint(k_pos, (num_patches, 2), 0, jnp.array([h - p + 1, w - p + 1]))
  imgs = jnp.asarray(train_images)[idx].astype(jnp.float32)
  patches = jax.vmap(lambda im, rc: jax.lax.dynamic_slice(im, (rc[0], rc[1], 0), (p, p, c)))(
      imgs, pos
  ).reshape(num_patches, -1)
  patches = _normalize_patches(patches)
  mean = patches.mean(0)
  cov = jnp.cov(patches - mean, rowvar=False)
  evals, evecs = jnp.linalg.eigh(cov)
  whiten = evecs @ jnp.diag(1.0 / jnp.sqrt(jnp.maximum(evals, 0) + zca_epsilon)) @ evecs.T
  data = (patches - mean) @ whiten
  cent = _lloyd(data, k_init, num_centroids, iterations)
  return KMeansModel(p, np.asarray(mean), np.asarray(whiten), np.asarray(cent))


def kmeans_features(images: jax.Array, *, model: KMeansModel) -> jax.Array:
  """Triangle activations `max(0, mean_k z_k - z_k)` of every patch, sum-pooled over the
  four image quadrants: `[B, H, W, C]` -> `[B, 4 K]`."""
  v = _normalize_patches(_patches(to_float(images), model.patch_size))
  v = (v - model.patch_mean) @ model.whiten
  cent = jnp.asarray(model.centroids)
  d2 = jnp.sum(v * v, -1, keepdims=True) - 2 * v @ cent.T + jnp.sum(cent * cent, 1)
  z = jnp.sqrt(jnp.maximum(d2, 0.0))
  f = jax.nn.relu(z.mean(-1, keepdims=True) - z)  # [B, h', w', K]
  b, hh, ww, k = f.shape
  rh, rw = hh // 2, ww // 2
  quads = [f[:, :rh, :rw], f[:, :rh, rw:], f[:, rh:, :rw], f[:, rh:, rw:]]
  return jnp.concatenate([q.sum(axis=(1, 2)) for q in quads], axis=-1).reshape(b, 4 * k)


@EXTRACTORS.register("kmeans")
def build_kmeans(
    *,
    image_shape,
    train_images=None,
    num_centroids: int = 400,
    patch_size: int = 6,
    num_patches: int = 100_000,
    iterations: int = 10,
    zca_epsilon: float = 0.1,
    seed: int = 0,
) -> FeatureFn:
  """Coates, Lee & Ng (2011) single-layer features, fitted on `train_images`."""
  h, w, _ = image_shape
  if not 1 <= patch_size <= min(h, w) - 1:
    raise ConfigError(
        f"patch_size={patch_size} must be between 1 and {min(h, w) - 1} for {h}x{w} images "
        "(quadrant pooling needs at least 2x2 patch positions)."
    )
  if num_centroids < 1 or num_patches < num_centroids:
    raise ConfigError(
        f"Need 1 <= num_centroids <= num_patches, got {num_centroids} and {num_patches}."
    )
  train = require_train_images("kmeans", train_images)
  model = fit_kmeans(
      train, num_centroids=num_centroids, patch_size=patch_size, num_patches=num_patches,
      iterations=iterations, zca_epsilon=zca_epsilon, seed=seed,
  )
  return functools.partial(kmeans_features, model=model)
