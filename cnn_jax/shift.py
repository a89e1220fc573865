"""Translation robustness: the accuracy of a trained model on test images moved by whole pixels.

A conv layer's output moves with its input (weight sharing makes it equivariant) and
pooling absorbs part of the move; a locally connected or dense layer has no such
structure, so what it learned at one position says nothing about the next one.
`shifted_accuracy` measures what survives: the mean accuracy over the four
axis-aligned moves (up, down, left, right) by `pixels`, the uncovered border filled
with 0 - the background of Fashion-MNIST and digits, so the raw uint8 images are
moved first and normalised after, exactly as training preprocesses them.

  model, variables, config = Run(workdir).load_model()
  normalize = Normalization.from_split(train, config.data.image_size or None)
  shifted_accuracy(model, variables, normalize, test.images, test.labels, pixels=2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data import augment

# (dy, dx) of a move by one pixel: up, down, left, right.
DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def shift_images(images: Any, dy: int, dx: int) -> jax.Array:
  """`[B, H, W, C]` images moved `dy` pixels down and `dx` right (negative: up, left).

  Pixels moved out of the frame are dropped and uncovered ones are 0, as in
  `scipy.ndimage.shift(images, (0, dy, dx, 0), order=0, cval=0)`. The dtype is kept
  (shift uint8 pixels before normalising, so that 0 is the background).
  """
  x = jnp.asarray(images)
  if x.ndim != 4:
    raise ValueError(f"shift_images expects [B, H, W, C] images, got shape {tuple(x.shape)}.")
  dy, dx = int(dy), int(dx)
  limit = min(max(abs(dy), abs(dx)), max(x.shape[1], x.shape[2]))  # past the edge: all zero
  dy, dx = (max(-limit, min(limit, d)) for d in (dy, dx))
  return jax.vmap(lambda image: augment.shift_image(image, dy, dx, limit))(x)


def shifted_accuracy(
    model: nn.Module,
    variables: Any,
    normalize: Callable[[jax.Array], jax.Array],
    images: np.ndarray,
    labels: np.ndarray,
    pixels: int,
    *,
    batch_size: int = 500,
) -> float:
  """Mean accuracy over the four axis-aligned moves of every image by `pixels`.

  Args:
    model, variables: a trained model (`Run(workdir).load_model()`), applied with
      `train=False`.
    normalize: the training run's preprocessing, `Normalization.from_split(train,
      image_size)`; applied after the move, to the raw images.
    images: uint8 `[N, H, W, C]`; labels: int `[N]`.
    pixels: how far to move; 0 gives the plain test accuracy.
    batch_size: images per step; each step evaluates its batch at all four moves.

  One jit-compiled `lax.map` over batches; the last batch is padded with label -1,
  which no prediction matches.
  """
  images, labels = np.asarray(images), np.asarray(labels)
  n = len(labels)
  if n == 0 or len(images) != n:
    raise ValueError(f"Need as many images as labels, at least one: {len(images)} and {n}.")
  bs = min(batch_size, n)
  steps = -(-n // bs)
  pad = steps * bs - n
  images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
  labels = np.concatenate([labels.astype(np.int32), np.full(pad, -1, np.int32)])

  @jax.jit
  def count(variables, images, labels):
    def correct(batch):
      x, y = batch
      moved = jnp.concatenate([shift_images(x, dy * pixels, dx * pixels) for dy, dx in DIRECTIONS])
      logits = model.apply(variables, normalize(moved), train=False)
      return jnp.sum(jnp.argmax(logits, axis=-1) == jnp.tile(y, len(DIRECTIONS)))

    return jnp.sum(jax.lax.map(correct, (images, labels)))

  total = count(variables, images.reshape(steps, bs, *images.shape[1:]), labels.reshape(steps, bs))
  return float(total) / (len(DIRECTIONS) * n)
