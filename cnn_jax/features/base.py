"""The feature-extractor registry and the two entry points every caller uses.

An extractor is registered as a *builder*: `build(image_shape, train_images,
**params) -> fn`, where `fn` is a pure, jit-able `[B, H, W, C] uint8 -> [B, D]
float32` function. The builder checks its parameters against the image size
(so a bad config fails before any work) and fits whatever must be learned on
the training split (k-means centroids, standardisation statistics).

  fn = make_extractor(ml_collections.ConfigDict({"name": "hog", "pixels_per_cell": 4}),
                      image_shape=(28, 28, 1))
  feats = extract("hog", images_uint8, pixels_per_cell=4)   # batched, on device
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.errors import ConfigError
from cnn_jax.registry import Registry

FeatureFn = Callable[[jax.Array], jax.Array]
# Builder arguments supplied by the caller, not by the config.
EXTRACTORS: Registry[Callable[..., FeatureFn]] = Registry(
    "feature extractor", context=("image_shape", "train_images")
)


def _as_dict(config: Mapping[str, Any] | ml_collections.ConfigDict) -> dict[str, Any]:
  if isinstance(config, ml_collections.ConfigDict):
    return config.to_dict()
  return dict(config)


def make_extractor(
    config: Mapping[str, Any] | ml_collections.ConfigDict,
    *,
    image_shape: tuple[int, int, int],
    train_images: np.ndarray | None = None,
    **extra: Any,
) -> FeatureFn:
  """Builds the extractor `config.name` with the other fields of `config` as parameters.

  Args:
    config: `name` plus the extractor's parameters (see `EXTRACTORS.params(name)`).
    image_shape: `(H, W, C)` of the images it will see.
    train_images: uint8 `[N, H, W, C]` training split, for extractors that fit
      something on it (`raw`, `kmeans`, `random_conv`, `cnn`).
    **extra: parameters that cannot live in a config (e.g. in-memory `variables`).

  Returns:
    A pure, jit-able function `[B, H, W, C] uint8 -> [B, D] float32`.
  """
  params = _as_dict(config)
  name = params.pop("name", None)
  if not name:
    raise ConfigError(
        f"The feature config has no 'name'. Set it to one of: {', '.join(EXTRACTORS.names())}."
    )
  builder = EXTRACTORS.get(name)
  params.update(extra)
  EXTRACTORS.check_params(name, params)
  if len(image_shape) != 3:
    raise ConfigError(f"image_shape must be (H, W, C), got {image_shape}.")
  params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
  return builder(image_shape=tuple(int(s) for s in image_shape), train_images=train_images,
                 **params)


def apply_in_batches(
    fn: FeatureFn,
    images: np.ndarray,
    batch_size: int = 1000,
    devices: Sequence[jax.Device] | None = None,
) -> np.ndarray:
  """Runs a jitted `fn` over `images` `[N, H, W, C]` in batches.

  Batches go round-robin to `devices` (default: every local device of JAX's
  default backend), so several GPUs, or a CPU split into several devices with
  `jax.config.update("jax_num_cpu_devices", k)`, work at once; each batch is
  computed whole on one device, so the result does not depend on how many there
  are. The last batch is padded to `batch_size` so only one shape is compiled.
  Returns float32 `[N, D]` on the host.
  """
  if images.ndim != 4:
    raise ConfigError(f"Images must be [N, H, W, C], got shape {images.shape}.")
  devices = list(devices or jax.local_devices())
  jfn = jax.jit(fn)
  n = len(images)
  batch_size = max(1, min(batch_size, n))
  results = []  # dispatch every batch first, so the devices never wait for the host
  for i, start in enumerate(range(0, n, batch_size)):
    batch = images[start : start + batch_size]
    if len(batch) < batch_size:
      pad = np.zeros((batch_size - len(batch), *batch.shape[1:]), batch.dtype)
      batch = np.concatenate([batch, pad])
    results.append(jfn(jax.device_put(batch, devices[i % len(devices)])))
  if not results:
    return np.zeros((0, 0), np.float32)
  out = np.empty((n, *results[0].shape[1:]), np.float32)
  for start, r in zip(range(0, n, batch_size), results):
    out[start : start + batch_size] = np.asarray(r)[: n - start]
  return out


def extract(
    name: str,
    images: np.ndarray,
    *,
    train_images: np.ndarray | None = None,
    batch_size: int = 1000,
    **params: Any,
) -> np.ndarray:
  """Features of uint8 `images` `[N, H, W, C]` -> float32 `[N, D]` from extractor `name`."""
  fn = make_extractor(
      {"name": name, **params}, image_shape=images.shape[1:], train_images=train_images
  )
  return apply_in_batches(fn, images, batch_size)


def require_train_images(name: str, train_images: np.ndarray | None) -> np.ndarray:
  if train_images is None:
    raise ConfigError(
        f"Feature extractor {name!r} is fitted on the training split: pass train_images "
        "(uint8 [N, H, W, C])."
    )
  return np.asarray(train_images)


def to_float(images: jax.Array) -> jax.Array:
  """uint8 (or float) `[B, H, W, C]` -> float32 in the 0..255 pixel scale."""
  return jnp.asarray(images).astype(jnp.float32)
