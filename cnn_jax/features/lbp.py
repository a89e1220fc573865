"""Local binary patterns (Ojala et al. 2002), code for code as `skimage.feature`'s LBP.

P neighbours on the circle of radius R, numbered counter-clockwise from the right and read
by bilinear interpolation (outside pixels = 0; see `lbp_sampling`); neighbour i's bit is
`neighbour >= centre`. Methods, as scikit-image defines them:

* `default`: sum of bit_i 2^i, codes 0..2^P-1;
* `ror`: the smallest of the P rotations of the `default` code (rotation invariant);
* `uniform`: the number of set bits when the bit string has at most two 0/1 transitions
  (counted along i = 0..P-1, not around the circle, as scikit-image counts), else P + 1;
* `nri_uniform`: the uniform patterns told apart by rotation, codes 0..P(P-1)+2;
* `var`: the variance of the P neighbour values (ddof=0), NaN where it is 0.

Exactness. On uint8 images the codes equal scikit-image's exactly, for every P and R (on
images up to about 1,000 pixels a side; larger ones warn): the bits are decided in integer
arithmetic, with scikit-image's own float64 rounding where a neighbour ties with the centre
(`lbp_sampling`). `var` is computed in float32 from the
exact integer neighbour values (relative error about 1e-6; scikit-image's float64
`sum(t^2) - sum(t)^2 / P` itself carries about 1e-10 of cancellation error), and is NaN
where the P values are exactly equal. Float images are interpolated in float32: a code can
differ from scikit-image's (float64) where a neighbour lies within float32 rounding of the
centre, e.g. on flat areas of integer-valued float images; convert to uint8 for exactness.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import ConfigError
from cnn_jax.features import lbp_sampling
from cnn_jax.features.base import EXTRACTORS, FeatureFn
from cnn_jax.features.hog import _pair

METHODS = ("default", "ror", "uniform", "nri_uniform", "var")
MAX_POINTS = 31  # `default` / `ror` codes are int32 (scikit-image's int32 weights overflow past it)
MAX_FEATURES = 65_536  # per image: cells x channels x bins
_ONE_HOT_MAX_BINS = 64


def _check(points: int, radius: float, method: str) -> None:
  if method not in METHODS:
    raise ConfigError(f"Unknown LBP method {method!r}; choose one of {', '.join(METHODS)}.")
  if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 1:
    raise ConfigError(f"LBP points must be a positive int, got {points!r}.")
  if method in ("default", "ror") and points > MAX_POINTS:
    raise ConfigError(
        f"LBP method {method!r} with points={points}: codes up to 2^{points} do not fit int32 "
        f"(at most points={MAX_POINTS}); use 'uniform' or 'nri_uniform' for more points."
    )
  if not isinstance(radius, (int, float, np.number)) or not radius > 0:
    raise ConfigError(f"LBP radius must be a positive number, got {radius!r}.")


def _planes(images: jax.Array, margin: int):
  """`[B, H, W]` -> `pixel(dr, dc)`: the images shifted by (dr, dc), zeros outside."""
  x = jnp.pad(images, ((0, 0), (margin, margin), (margin, margin)))
  h, w = images.shape[1:]
  return lambda dr, dc: x[:, margin + dr : margin + dr + h, margin + dc : margin + dc + w]


def _limbs(y1: jax.Array, y2: jax.Array, p: int, q: int) -> tuple[jax.Array, jax.Array]:
  """`N = p y1 + q y2` (|N| < 2^42) as `hi 2^13 + lo`, 0 <= lo < 2^13, all in int32."""
  if q == 0:
    hi, lo = p * (y1 >> 13), p * (y1 & 8191)
  else:
    hi = p * (y1 >> 13) + q * (y2 >> 13)  # |y >> 13| <= 3113, p + q = 1e5: |hi| < 2^29
    lo = p * (y1 & 8191) + q * (y2 & 8191)  # < 1e5 * 2^13 < 2^30
  return hi + (lo >> 13), lo & 8191


def _gather(table: np.ndarray, index: jax.Array) -> jax.Array:
  return jnp.asarray(table.reshape(-1)).at[index].get(mode="promise_in_bounds")


def _centre_only(nb: lbp_sampling.Neighbour) -> bool:
  """Ties resolved by the centre value alone (one table, one column)."""
  return nb.rule == "keyed" and nb.key_bits == 0 and nb.table.shape[0] == 1


def _centre_only_tie_bits(neighbours, centre: jax.Array) -> dict[int, jax.Array]:
  """The tie bits of every `_centre_only` neighbour from one gather: bit j of word[centre]."""
  which = [i for i, nb in enumerate(neighbours) if _centre_only(nb)]
  if not which:
    return {}
  words = sum(neighbours[i].table.reshape(256).astype(np.int64) << j
              for j, i in enumerate(which))
  word = _gather(words.astype(np.uint32), centre)
  return {i: ((word >> j) & 1).astype(bool) for j, i in enumerate(which)}


def _integer_neighbour(pixel, centre: jax.Array, nb: lbp_sampling.Neighbour, tie_bit=None):
  """One neighbour on uint8 images: (bit, N as (hi, lo)) with `N = 1e10 (v_ideal - centre)`.
  `tie_bit`: the bit at a tie, if already known (`_centre_only_tie_bits`)."""
  rows, cols = nb.rows, nb.cols

  def diff(dr: int, dc: int):  # pixel - centre; the centre's own corner needs no work
    return jnp.zeros_like(centre) if dr == dc == 0 else pixel(dr, dc) - centre

  if nb.rule == "exact":
    hi, lo = _limbs(lbp_sampling.SCALE * diff(rows.lo, cols.lo), 0, lbp_sampling.SCALE, 0)
    return hi >= 0, (hi, lo)
  y1 = nb.s * diff(rows.lo, cols.lo) + nb.t * diff(rows.lo, cols.hi)
  y2 = nb.s * diff(rows.hi, cols.lo) + nb.t * diff(rows.hi, cols.hi) if nb.q else 0
  hi, lo = _limbs(y1, y2, nb.p, nb.q)  # N >= 0 iff hi >= 0, since 0 <= lo < 2^13
  tie = (hi | lo) == 0
  cls = nb.cls if len(nb.table if nb.rule == "keyed" else nb.err_top) > 1 else 0
  if tie_bit is not None:
    pass
  elif nb.rule == "keyed":
    col = (y1 >> nb.key_shift) & ((1 << nb.key_bits) - 1) if nb.key_bits else 0
    if nb.k_column is not None:
      col = _gather(nb.k_column, col)
    n_k = nb.table.shape[-1]
    tie_bit = _gather(nb.table, jnp.where(tie, cls * (256 * n_k) + centre * n_k + col, 0))
  else:  # "error": floor(2^K eX) + floor(2^K eY) + 2^K half-gap + sticky >= 0
    a, b = pixel(rows.lo, cols.lo), pixel(rows.lo, cols.hi)
    c, d = pixel(rows.hi, cols.lo), pixel(rows.hi, cols.hi)
    top = _gather(nb.err_top, jnp.where(tie, cls * 65536 + a * 256 + b, 0))
    bottom = _gather(nb.err_bottom, jnp.where(tie, cls * 65536 + c * 256 + d, 0))
    gap = _gather(nb.err_half_gap, jnp.where(tie, cls * 256 + centre, 0))
    tie_bit = (top >> 1) + bottom + gap + (top & 1) >= 0
  return (hi >= 0) & (~tie | tie_bit), (hi, lo)


def _float_neighbour(pixel, centre: jax.Array, nb: lbp_sampling.Neighbour):
  """One neighbour on float images, interpolated in float32: (bit, neighbour - centre)."""
  rows, cols = nb.rows, nb.cols
  dr, dc = np.float32(rows.ideal / lbp_sampling.SCALE), np.float32(cols.ideal / lbp_sampling.SCALE)
  top = (1 - dc) * pixel(rows.lo, cols.lo) + dc * pixel(rows.lo, cols.hi)
  bottom = (1 - dc) * pixel(rows.hi, cols.lo) + dc * pixel(rows.hi, cols.hi)
  diff = (1 - dr) * top + dr * bottom - centre
  return diff >= 0, diff


def _variance(values: list[jax.Array], equal: jax.Array) -> jax.Array:
  mean = sum(values) / len(values)
  var = sum(jnp.square(v - mean) for v in values) / len(values)
  return jnp.where(equal, jnp.nan, var)


def lbp_neighbours(images: jax.Array, points: int = 8, radius: float = 1,
                   variance: bool = False) -> tuple[list[jax.Array], jax.Array | None]:
  """`[B, H, W]` (uint8: exact; float: float32) -> the P neighbour bits, each `[B, H, W]`,
  and, if asked, the variance of the P neighbour values `[B, H, W]` (float32, NaN where
  they are all equal). (A batch-minor layout, which speeds up HOG, was 1.3-1.5x slower here.)
  """
  if images.ndim != 3:
    raise ConfigError(f"LBP takes [B, H, W] images, got shape {images.shape}.")
  _, h, w = images.shape
  neighbours = lbp_sampling.plan(int(points), float(radius), h, w)
  margin = math.ceil(radius) + 1
  if jnp.issubdtype(images.dtype, jnp.floating):
    x = images.astype(jnp.float32)
    pixel = _planes(x, margin)
    bits, diffs = zip(*(_float_neighbour(pixel, x, nb) for nb in neighbours), strict=True)
    var = None
    if variance:
      equal = functools.reduce(jnp.logical_and, [d == diffs[0] for d in diffs])
      var = _variance(list(diffs), equal)
    return list(bits), var
  if images.dtype != jnp.uint8:
    raise ConfigError(
        f"LBP takes uint8 (exact) or float images, got {images.dtype}; convert with "
        "images.astype(np.uint8) if the values are 0..255."
    )
  x = images.astype(jnp.int32)
  pixel = _planes(x, margin)
  tie_bits = _centre_only_tie_bits(neighbours, x)
  bits, numerators = zip(*(_integer_neighbour(pixel, x, nb, tie_bits.get(i))
                           for i, nb in enumerate(neighbours)), strict=True)
  var = None
  if variance:
    hi0, lo0 = numerators[0]
    equal = functools.reduce(jnp.logical_and, [(hi == hi0) & (lo == lo0) for hi, lo in numerators])
    # N / 1e10 is the neighbour minus the centre; the variance does not see the centre.
    values = [(hi.astype(jnp.float32) * 8192 + lo.astype(jnp.float32)) * 1e-10
              for hi, lo in numerators]
    var = _variance(values, equal)
  return list(bits), var


def _codes(bits: list[jax.Array], method: str) -> jax.Array:
  """The P neighbour bits (bool, any shape) -> codes of `method` (int32)."""
  p = len(bits)
  b = [bit.astype(jnp.int32) for bit in bits]
  if method in ("default", "ror"):
    code = sum(bi << i for i, bi in enumerate(b))
    if method == "default":
      return code
    mask = (1 << p) - 1 if p < 31 else 0x7FFFFFFF
    best = code
    for j in range(1, p):
      best = jnp.minimum(best, ((code >> j) | (code << (p - j))) & mask)
    return best
  ones = sum(b)
  changes = sum((b[i] != b[i + 1]).astype(jnp.int32) for i in range(p - 1)) if p > 1 else 0 * ones
  if method == "uniform":
    return jnp.where(changes <= 2, ones, p + 1)
  first_one, first_zero = jnp.full_like(ones, p), jnp.full_like(ones, p)
  for i in reversed(range(p)):
    first_one = jnp.where(bits[i], i, first_one)
    first_zero = jnp.where(bits[i], first_zero, i)
  rotation = jnp.where(first_one == 0, ones - first_zero, p - first_one)
  code = jnp.where(ones == 0, 0, jnp.where(ones == p, p * (p - 1) + 1,
                                           1 + (ones - 1) * p + rotation))
  return jnp.where(changes <= 2, code, p * (p - 1) + 2)


def lbp_codes(images: jax.Array, method: str = "uniform", points: int = 8,
              radius: float = 1) -> jax.Array:
  """`[B, H, W]` uint8 (or float) -> LBP codes `[B, H, W]` int32 (`var`: float32), as
  `skimage.feature.local_binary_pattern(image, points, radius, method)` on each image."""
  _check(points, radius, method)
  bits, var = lbp_neighbours(images, points, radius, variance=method == "var")
  return var if method == "var" else _codes(bits, method)


@functools.lru_cache(maxsize=8)
def _ror_classes(points: int) -> np.ndarray:
  """Code -> index among the distinct `ror` codes (binary necklaces), `[2^P]` int32."""
  codes = np.arange(1 << points, dtype=np.int64)
  best = codes.copy()
  for j in range(1, points):
    best = np.minimum(best, ((codes >> j) | (codes << (points - j))) & ((1 << points) - 1))
  return np.searchsorted(np.unique(best), best).astype(np.int32)


def num_bins(method: str, points: int) -> int:
  """Histogram bins per cell (`var`: 1, the cell's mean variance)."""
  if method == "uniform":
    return points + 2
  if method == "nri_uniform":
    return points * (points - 1) + 3
  if method == "default":
    return 2**points
  if method == "ror":  # binary necklaces of length P
    return sum(_euler_phi(d) * 2 ** (points // d) for d in range(1, points + 1)
               if points % d == 0) // points
  return 1


def _euler_phi(n: int) -> int:
  return sum(1 for k in range(1, n + 1) if math.gcd(n, k) == 1)


def lbp_features(
    images: jax.Array,
    *,
    pixels_per_cell: tuple[int, int] = (7, 7),
    method: str = "uniform",
    points: int = 8,
    radius: float = 1,
) -> jax.Array:
  """Per-cell LBP code histograms: `[B, H, W, C]` -> `[B, cells_r * cells_c * C * bins]`.

  Each histogram is the fraction of the cell's pixels with each code (`ror` codes are
  numbered among the distinct rotation-invariant codes); for `var`, one number per cell:
  the mean local variance, zero-variance (NaN) pixels counting 0. Cells that do not fit at
  the bottom/right are dropped.
  """
  b, h, w, c = images.shape
  ch, cw = pixels_per_cell
  ncr, ncc = h // ch, w // cw
  planes = jnp.moveaxis(images, -1, 1).reshape(b * c, h, w)
  codes = lbp_codes(planes, method, points, radius)[:, : ncr * ch, : ncc * cw]
  if method == "var":
    cells = jnp.nan_to_num(codes, nan=0.0).reshape(b, c, ncr, ch, ncc, cw).mean(axis=(3, 5))
    return jnp.moveaxis(cells, 1, 3).reshape(b, -1)
  if method == "ror":
    codes = jnp.asarray(_ror_classes(points))[codes]
  bins = num_bins(method, points)
  if bins <= _ONE_HOT_MAX_BINS:
    onehot = jax.nn.one_hot(codes, bins, dtype=jnp.float32)
    hist = onehot.reshape(b, c, ncr, ch, ncc, cw, -1).mean(axis=(3, 5))
  else:
    cell = (jnp.arange(ncr)[:, None, None, None] * ncc + jnp.arange(ncc)[None, None, :, None])
    cell = jnp.broadcast_to(cell, (ncr, ch, ncc, cw)).reshape(ncr * ch, ncc * cw)
    plane = jnp.arange(b * c)[:, None, None]
    index = ((plane * (ncr * ncc) + cell) * bins + codes).reshape(-1)
    counts = jnp.zeros(b * c * ncr * ncc * bins, jnp.float32).at[index].add(1.0)
    hist = (counts / (ch * cw)).reshape(b, c, ncr, ncc, bins)
  return jnp.moveaxis(hist, 1, 3).reshape(b, -1)


@EXTRACTORS.register("lbp")
def build_lbp(
    *,
    image_shape: tuple[int, int, int],
    train_images=None,
    pixels_per_cell: int | tuple[int, int] = 7,
    method: str = "uniform",
    points: int = 8,
    radius: int | float = 1,
) -> FeatureFn:
  """LBP histograms; defaults: 4x4 cells of 7x7 on 28x28, (8, 1) uniform codes -> 160
  features. Any P and R (bilinear interpolation), methods as scikit-image."""
  del train_images
  _check(points, radius, method)
  ppc = _pair(pixels_per_cell, "pixels_per_cell")
  h, w, c = image_shape
  if ppc[0] > h or ppc[1] > w:
    raise ConfigError(
        f"LBP cells of {ppc[0]}x{ppc[1]} pixels are larger than the {h}x{w} image; "
        "use smaller pixels_per_cell."
    )
  size = (h // ppc[0]) * (w // ppc[1]) * c * num_bins(method, int(points))
  if size > MAX_FEATURES:
    raise ConfigError(
        f"LBP method {method!r} with points={points} gives {size:,} features per image "
        f"(cells x channels x bins), more than {MAX_FEATURES:,}: use method='uniform' or "
        "'nri_uniform', fewer points or larger pixels_per_cell."
    )
  lbp_sampling.plan(int(points), float(radius), h, w)  # build the tables once, outside any trace
  return functools.partial(lbp_features, pixels_per_cell=ppc, method=method,
                           points=int(points), radius=float(radius))
