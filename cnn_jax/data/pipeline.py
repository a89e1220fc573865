"""Device-resident data: the whole split lives on the device and is batched there.

For small data sets (digits, MNIST-sized, CIFAR-sized) the host does no work
per step: the batch for global step `t` is `perm_e[i*B:(i+1)*B]` of the
training images, where `e = t // steps_per_epoch`, `i = t % steps_per_epoch` and
`perm_e = permutation(fold_in(data_key, e))`. The data order is therefore a pure
function of (seed, step), which is what makes runs repeatable and resumable.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data.loader import Split, pixel_statistics
from cnn_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Normalization:
  """uint8 pixels -> float: `(x / 255 - mean) / std`, then resized to `image_size`."""

  mean: float
  std: float
  image_size: int | None = None

  @classmethod
  def from_stats(cls, mean: float, std: float, image_size: int | None = None) -> "Normalization":
    """From pixel statistics in [0, 1]; a constant image set (std 0) is only centred."""
    return cls(mean=mean, std=std or 1.0, image_size=image_size or None)

  @classmethod
  def from_images(cls, images: np.ndarray, image_size: int | None = None) -> "Normalization":
    """Mean and std of all pixels of `images` (uint8 `[N, H, W, C]`, the training split)."""
    return cls.from_stats(*pixel_statistics(images), image_size)

  @classmethod
  def from_split(cls, split: Split, image_size: int | None = None) -> "Normalization":
    """The statistics of `split`'s images (kept with the split when it came from the cache)."""
    if split.pixel_stats is None:
      return cls.from_images(split.images, image_size)
    return cls.from_stats(*split.pixel_stats, image_size)

  def __call__(self, images: jax.Array, dtype=jnp.float32) -> jax.Array:
    """`[B, H, W, C]` uint8 -> `[B, S, S, C]` float (S = image_size or H)."""
    x = (images.astype(jnp.float32) / 255.0 - self.mean) / self.std
    if self.image_size and x.shape[1:3] != (self.image_size, self.image_size):
      b, _, _, c = x.shape
      x = jax.image.resize(x, (b, self.image_size, self.image_size, c), method="bilinear")
    return x.astype(dtype)


def epoch_permutation(data_key: jax.Array, epoch: int | jax.Array, n: int) -> jax.Array:
  """The example order of `epoch`: a permutation of `range(n)` from (data key, epoch)."""
  return jax.random.permutation(jax.random.fold_in(data_key, epoch), n)


# `fold_in` tag of the labelled-subset draw (a stream of its own: it must not depend on,
# or change, the model's initialisation or the data order).
LABELLED_SUBSET_STREAM = 0x1abe1


def labelled_indices(n: int, num_labelled: int, seed: int) -> np.ndarray:
  """Sorted indices of `num_labelled` of `n` training examples, drawn from `seed` alone.

  Every run with the same seed (a network trained from scratch, a pre-trained one,
  a linear probe) sees the same labelled examples; 0 means all of them.
  """
  if num_labelled == 0:
    return np.arange(n)
  if not 0 < num_labelled <= n:
    raise ConfigError(
        f"data.num_train={num_labelled} must be between 1 and the {n} training examples "
        "(0 = all)."
    )
  key = jax.random.fold_in(jax.random.key(seed), LABELLED_SUBSET_STREAM)
  return np.sort(np.asarray(jax.random.permutation(key, n))[:num_labelled])


def subset(split: Split, indices: np.ndarray) -> Split:
  """The examples `indices` of `split` (a no-op for all of them)."""
  if len(indices) == len(split):
    return split
  return dataclasses.replace(
      split, images=split.images[indices], labels=split.labels[indices], pixel_stats=None
  )


def batch_from_permutation(
    images: jax.Array, labels: jax.Array, perm: jax.Array, index: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array]:
  """The `index`-th batch of an epoch, gathered on the device (jit-able)."""
  idx = jax.lax.dynamic_slice_in_dim(perm, index * batch_size, batch_size)
  return images[idx], labels[idx]


def iterate_batches(
    split: Split,
    batch_size: int,
    *,
    seed: int | None = None,
    epoch: int = 0,
    drop_remainder: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Host-side batches of a split, shuffled by (seed, epoch) when `seed` is given.

  For data sets too large to keep on the device, and for feature extraction.
  """
  n = len(split)
  order = (
      np.asarray(epoch_permutation(jax.random.key(seed), epoch, n))
      if seed is not None
      else np.arange(n)
  )
  stop = n - n % batch_size if drop_remainder else n
  for start in range(0, stop, batch_size):
    idx = order[start : start + batch_size]
    yield split.images[idx], split.labels[idx]
