"""Data augmentation ops, registered by name and written in the config.

  config.data.augment = ("random_crop(pad=4)", "flip_lr")

Each op is a pure function `op(image, key, **params) -> image` of one `[H, W, C]`
image (uint8 or float, before normalisation) and a PRNG key, so the same seed
gives the same augmented batch on any device count, and a resumed run the same
batches as an uninterrupted one. Ops run in the order written, on the device,
inside the compiled train step; evaluation never augments.

Ops:
  translate(max=2)     move by a random whole number of pixels in [-max, max] along each
                       axis, filling with 0 (the background of digits / Fashion-MNIST)
  random_crop(pad=4)   zero-pad by `pad` on every side and crop a random window of the
                       original size (the CIFAR/ResNet recipe): the same as translate(max=pad)
  flip_lr(p=0.5)       mirror left-right with probability p
  cutout(size=8)       zero a size x size square at a random centre (DeVries & Taylor 2017),
                       clipped at the border
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.registry import Registry

AUGMENTATIONS: Registry[Callable[..., jax.Array]] = Registry("augmentation")
# `fold_in` tag of the augmentation stream (distinct from dropout's).
AUGMENT_STREAM = 0xa06


def shift_image(image: jax.Array, dy: jax.Array | int, dx: jax.Array | int, limit: int) -> jax.Array:
  """`[H, W, C]` `image` moved down by `dy` and right by `dx` (traced values with
  |d| <= `limit`), zero-filled: `scipy.ndimage.shift(image, (dy, dx, 0), order=0, cval=0)`."""
  padded = jnp.pad(image, ((limit, limit), (limit, limit), (0, 0)))
  h, w, c = image.shape
  return jax.lax.dynamic_slice(padded, (limit - dy, limit - dx, 0), (h, w, c))


@AUGMENTATIONS.register("translate")
def translate(image: jax.Array, key: jax.Array, max: int = 2) -> jax.Array:  # noqa: A002
  if max < 0:
    raise ConfigError(f"translate(max={max}): max must be >= 0.")
  d = jax.random.randint(key, (2,), -max, max + 1)
  return shift_image(image, d[0], d[1], max)


@AUGMENTATIONS.register("random_crop")
def random_crop(image: jax.Array, key: jax.Array, pad: int = 4) -> jax.Array:
  if pad < 0:
    raise ConfigError(f"random_crop(pad={pad}): pad must be >= 0.")
  return translate(image, key, max=pad)


@AUGMENTATIONS.register("flip_lr")
def flip_lr(image: jax.Array, key: jax.Array, p: float = 0.5) -> jax.Array:
  return jnp.where(jax.random.bernoulli(key, p), image[:, ::-1], image)


@AUGMENTATIONS.register("cutout")
def cutout(image: jax.Array, key: jax.Array, size: int = 8) -> jax.Array:
  h, w, _ = image.shape
  cy, cx = jax.random.randint(key, (2,), 0, jnp.array([h, w]))
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  top, left = cy - size // 2, cx - size // 2
  inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
  return jnp.where(inside[..., None], jnp.zeros_like(image), image)


_SPEC = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(?:\((.*)\))?\s*$")


def parse(spec: str) -> tuple[str, dict]:
  """`"random_crop(pad=4)"` -> `("random_crop", {"pad": 4})`, checked against the op."""
  m = _SPEC.match(spec)
  if not m:
    raise ConfigError(f"Cannot read augmentation {spec!r}; write e.g. 'random_crop(pad=4)'.")
  name, args = m.group(1), m.group(2)
  fn = AUGMENTATIONS.get(name)
  params = {}
  if args and args.strip():
    try:
      call = ast.parse(f"f({args})", mode="eval").body
      if call.args:
        raise ValueError("positional arguments")
      params = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as e:
      raise ConfigError(
          f"Cannot read the arguments of augmentation {spec!r} ({e}); write name=value, "
          "e.g. 'random_crop(pad=4)'."
      ) from None
  known = [p for p in inspect.signature(fn).parameters if p not in ("image", "key")]
  unknown = sorted(set(params) - set(known))
  if unknown:
    raise ConfigError(
        f"Augmentation {name!r} has no parameter(s) {', '.join(unknown)}; its parameters: "
        f"{', '.join(known)}."
    )
  return name, params


def build(specs: Sequence[str]) -> Callable[..., jax.Array] | None:
  """The batch augmentation `(images [B, H, W, C], key, offset=0) -> images`; None if empty.

  Example `b` of the global batch uses `fold_in(key, b)` (a device holding the examples
  from `offset` on passes it, so every device count augments alike), op `i` then
  `fold_in(that, i)`.
  """
  ops = [parse(s) for s in specs]
  if not ops:
    return None
  for name, params in ops:  # parameter errors now, not inside the first compiled step
    jax.eval_shape(lambda x, k, n=name, p=params: AUGMENTATIONS.get(n)(x, k, **p),
                   jax.ShapeDtypeStruct((8, 8, 1), jnp.uint8), jax.random.key(0))

  def one(image: jax.Array, key: jax.Array) -> jax.Array:
    for i, (name, params) in enumerate(ops):
      image = AUGMENTATIONS.get(name)(image, jax.random.fold_in(key, i), **params)
    return image

  def batch(images: jax.Array, key: jax.Array, offset: jax.Array | int = 0) -> jax.Array:
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(offset + jnp.arange(images.shape[0]))
    return jax.vmap(one)(images, keys)

  return batch
