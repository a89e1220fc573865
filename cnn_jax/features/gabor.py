"""A Gabor filter bank applied as one fixed convolution, magnitude, average-pooled.

Kernels follow `skimage.filters.gabor_kernel(frequency, theta, bandwidth)`:
a complex Gaussian-windowed harmonic, `sigma = c(bandwidth) / frequency`, size
`2 * ceil(3 sigma (rotated extent)) + 1`. Kernels of different sizes are
zero-padded, centred, to the largest one so that the whole bank is one
`[k, k, 1, 2 * F]` convolution (real and imaginary parts as channels). As in
`skimage.filters.gabor`, it is a true convolution with 'reflect' borders.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import ConfigError
from cnn_jax.features.base import EXTRACTORS, FeatureFn, to_float
from cnn_jax.features.hog import _pair


def gabor_kernel(frequency: float, theta: float = 0.0, bandwidth: float = 1.0,
                 n_stds: float = 3.0) -> np.ndarray:
  """Complex128 `[2 y0 + 1, 2 x0 + 1]` kernel, as `skimage.filters.gabor_kernel`."""
  sigma = (1.0 / math.pi * math.sqrt(math.log(2) / 2.0)
           * (2.0**bandwidth + 1) / (2.0**bandwidth - 1)) / frequency
  ct, st = math.cos(theta), math.sin(theta)
  x0 = math.ceil(max(abs(n_stds * sigma * ct), abs(n_stds * sigma * st), 1))
  y0 = math.ceil(max(abs(n_stds * sigma * ct), abs(n_stds * sigma * st), 1))
  y, x = np.meshgrid(np.arange(-y0, y0 + 1), np.arange(-x0, x0 + 1), indexing="ij")
  rotx = x * ct + y * st
  roty = -x * st + y * ct
  g = np.exp(-0.5 * (rotx**2 + roty**2) / sigma**2 + 1j * 2 * np.pi * frequency * rotx)
  return g / (2 * np.pi * sigma * sigma)


def gabor_bank(frequencies: Sequence[float], orientations: int, bandwidth: float = 1.0):
  """All kernels (frequency-major, theta = pi i / orientations), padded to one odd size.

  Returns (complex `[F, k, k]`, list of (frequency, theta)).
  """
  specs = [(f, math.pi * i / orientations) for f in frequencies for i in range(orientations)]
  kernels = [gabor_kernel(f, t, bandwidth) for f, t in specs]
  size = max(max(k.shape) for k in kernels)
  bank = np.zeros((len(kernels), size, size), np.complex128)
  for n, k in enumerate(kernels):
    oy, ox = (size - k.shape[0]) // 2, (size - k.shape[1]) // 2
    bank[n, oy : oy + k.shape[0], ox : ox + k.shape[1]] = k
  return bank, specs


def gabor_magnitudes(images: jax.Array, bank: np.ndarray) -> jax.Array:
  """`[B, H, W, 1]` -> `|image * kernel|` for each kernel, `[B, H, W, F]` (pixels scaled to 0..1)."""
  x = to_float(images) / 255.0
  f, k, _ = bank.shape
  pad = k // 2
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="symmetric")
  # Convolution = correlation with the flipped kernel.
  flipped = bank[:, ::-1, ::-1]
  w = np.concatenate([flipped.real, flipped.imag]).transpose(1, 2, 0)[:, :, None, :]
  y = jax.lax.conv_general_dilated(
      x, jnp.asarray(w, jnp.float32), (1, 1), "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST,
  )
  return jnp.hypot(y[..., :f], y[..., f:])


def gabor_features(images: jax.Array, *, bank: np.ndarray, pool: tuple[int, int]) -> jax.Array:
  """Gabor magnitudes average-pooled over `pool` windows: `[B, H, W, 1] -> [B, D]`."""
  if images.shape[-1] != 1:
    images = jnp.mean(to_float(images), axis=-1, keepdims=True)
  mag = gabor_magnitudes(images, bank)
  b, h, w, f = mag.shape
  ph, pw = pool
  nh, nw = h // ph, w // pw
  pooled = mag[:, : nh * ph, : nw * pw].reshape(b, nh, ph, nw, pw, f).mean(axis=(2, 4))
  return pooled.reshape(b, -1)


@EXTRACTORS.register("gabor")
def build_gabor(
    *,
    image_shape: tuple[int, int, int],
    train_images=None,
    frequencies: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4),
    orientations: int = 8,
    bandwidth: float = 1.0,
    pool: int | tuple[int, int] = 7,
) -> FeatureFn:
  """Gabor bank; defaults: 4 frequencies x 8 orientations, 4x4 pooled on 28x28 -> 512 features."""
  del train_images
  h, w = image_shape[:2]
  if not frequencies or any(not 0 < f <= 0.5 for f in frequencies):
    raise ConfigError(
        f"Gabor frequencies must be in (0, 0.5] cycles/pixel, got {frequencies}."
    )
  if orientations < 1:
    raise ConfigError(f"orientations must be >= 1, got {orientations}.")
  ph, pw = _pair(pool, "pool")
  if ph > h or pw > w:
    raise ConfigError(f"Gabor pool {ph}x{pw} is larger than the {h}x{w} image; use a smaller pool.")
  bank, _ = gabor_bank(tuple(frequencies), int(orientations), bandwidth)
  return functools.partial(gabor_features, bank=bank, pool=(ph, pw))
