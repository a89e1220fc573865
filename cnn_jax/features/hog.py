"""Histogram of oriented gradients (Dalal & Triggs 2005), as `skimage.feature.hog` computes it.

The same algorithm as scikit-image 0.26, vectorised over a batch:
0. with `transform_sqrt`, the image is replaced by its square root (power-law compression);
1. gradients by central differences `I[r+1] - I[r-1]`, zero on the border rows/columns;
   for colour images, each pixel takes the channel with the largest gradient magnitude;
2. each pixel votes its magnitude, unsplit, into the orientation bin
   `[180 i / n, 180 (i + 1) / n)` (degrees, unsigned, bin edges in float32 as scikit-image
   has them); a cell's histogram is the mean vote over its pixels (cells that do not fit
   at the bottom/right are dropped);
3. every `cells_per_block` window of cells (stride one cell) is normalised on its own
   (`L1`, `L1-sqrt`, `L2`, or `L2-Hys`: L2, clip at 0.2, L2 again; eps = 1e-5);
4. output order: `[blocks_row, blocks_col, cells_row, cells_col, orientations]`, flattened.

Exactness. On uint8 images every pixel votes into the bin scikit-image's float64 puts it
in, with or without `transform_sqrt` (integer gradients: compared against the bin edges,
checked exhaustively when built; square-root gradients: ranked against per-gradient
thresholds computed with scikit-image's own float64 `arctan2`). What is left is float32
arithmetic in the magnitudes, sums and norms: outputs within about 1e-6 of scikit-image's.
Float images take float32 gradients and `arctan2`, also within about 1e-6, except that a
gradient within float32 rounding of a bin edge can vote into the neighbouring bin. Generic
float images rarely have one; integer images scaled to [0, 1] or square-rooted put many
exactly on edges (45 and 90 degrees with 8 orientations; 60 degrees), where a feature can
then differ by that pixel's share of its block (0.7 seen). Use uint8 images for exactness.
The channel of colour images under `transform_sqrt` is picked in float32, which can differ
from scikit-image's pick where two channels' gradient magnitudes agree to about 1e-7.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import ConfigError
from cnn_jax.features.base import EXTRACTORS, FeatureFn, to_float

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
_EPS = 1e-5


def _pair(v: int | tuple[int, int], what: str) -> tuple[int, int]:
  t = (v, v) if isinstance(v, int) else tuple(v)
  if len(t) != 2 or any(int(x) < 1 for x in t):
    raise ConfigError(f"{what} must be a positive int or a pair of them, got {v!r}.")
  return int(t[0]), int(t[1])


def hog_output_dim(
    image_hw: tuple[int, int],
    orientations: int,
    pixels_per_cell: tuple[int, int],
    cells_per_block: tuple[int, int],
) -> int:
  """Feature length; raises ConfigError when the blocks do not fit the image."""
  (h, w), (ch, cw), (bh, bw) = image_hw, pixels_per_cell, cells_per_block
  if orientations < 1:
    raise ConfigError(f"orientations must be >= 1, got {orientations}.")
  nbr, nbc = h // ch - bh + 1, w // cw - bw + 1
  if nbr < 1 or nbc < 1:
    raise ConfigError(
        f"HOG blocks do not fit a {h}x{w} image: pixels_per_cell={pixels_per_cell} and "
        f"cells_per_block={cells_per_block} need at least {bh * ch}x{bw * cw} pixels. "
        "Use smaller cells or fewer cells per block."
    )
  return nbr * nbc * bh * bw * orientations


def _gradients(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`[H, W, ...]` -> row and column gradients, zero on the border rows / columns."""
  rest = [(0, 0)] * (x.ndim - 2)
  g_row = jnp.pad(x[2:] - x[:-2], [(1, 1), (0, 0), *rest])
  g_col = jnp.pad(x[:, 2:] - x[:, :-2], [(0, 0), (1, 1), *rest])
  return g_row, g_col


def _bin_edges(orientations: int) -> np.ndarray:
  # scikit-image's Cython keeps 180/n and its multiples in C floats (float32).
  step = np.float32(180.0 / orientations)
  return np.array([step * np.float32(i) for i in range(orientations + 1)], np.float32)


@functools.lru_cache(maxsize=32)
def _edge_directions(orientations: int) -> tuple[np.ndarray, np.ndarray] | None:
  """cos/sin (float32) of the inner bin edges, if comparing against them bins every integer
  gradient (uint8 images: components in [-255, 255]) exactly as scikit-image's float64
  `rad2deg(arctan2) % 180` does; else None (then arctan2 is used)."""
  edges = _bin_edges(orientations)
  cos = np.cos(np.deg2rad(edges[1:-1].astype(np.float64))).astype(np.float32)
  sin = np.sin(np.deg2rad(edges[1:-1].astype(np.float64))).astype(np.float32)
  g = np.arange(-255, 256, dtype=np.float32)
  gr, gc = np.meshgrid(g, g, indexing="ij")
  ref = np.searchsorted(edges.astype(np.float64),
                        np.rad2deg(np.arctan2(gr, gc, dtype=np.float64)) % 180, "right") - 1
  flip = (gr < 0) | ((gr == 0) & (gc < 0))
  gr, gc = np.where(flip, -gr, gr), np.where(flip, -gc, gc)
  ours = sum((cos[k] * gr >= sin[k] * gc).astype(int) for k in range(orientations - 1))
  ok = (ours == ref) | ((gr == 0) & (gc == 0))  # zero gradients vote nothing
  return (cos, sin) if ok.all() else None


@functools.lru_cache(maxsize=8)
def _sqrt_thresholds(orientations: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
  """Exact bins for square-root gradients of uint8 images.

  A gradient is `sqrt(a) - sqrt(b)` (float64), one of ~65k values. Sorted, with `rank` the
  index of pixel pair `256 a + b` and `zero` the rank of 0: for a fixed g_col, the angle
  `rad2deg(arctan2(g_row, g_col)) % 180` is monotone in g_row's rank on each side of zero
  (rising for g_col >= 0, falling for g_col < 0), so "angle >= edge k" is "key >= threshold"
  with key = rank (g_col >= 0) or -rank (g_col < 0): one threshold per g_col value, side
  and edge, found by binary search on scikit-image's own float64 angle (g_row = 0: bin 0).

  Returns the values (float32), `rank` `[65536]`, `zero` and thresholds `[values, 2 sides,
  orientations]` int32 (edges 1..n; edge n is 180 or past it, so no pixel crosses it).
  """
  root = np.sqrt(np.arange(256, dtype=np.float64))
  pairs = (root[:, None] - root[None, :]).ravel()
  values = np.sort(pairs)
  values = values[np.r_[True, values[1:] != values[:-1]]]
  rank = np.searchsorted(values, pairs).astype(np.int32)
  zero, n = int(np.searchsorted(values, 0.0)), len(values)
  step = 180.0 / orientations
  edges = np.array([step * k for k in range(1, orientations + 1)])
  assert edges[-1] >= 180, edges
  shape = (n, 2, orientations)
  g_col = np.broadcast_to(values[:, None, None], shape).ravel()
  edge = np.broadcast_to(edges[None, None, :], shape).ravel()
  rising = g_col >= 0
  side = np.broadcast_to(np.arange(2)[None, :, None], shape).ravel()
  first = np.where(side == 0, 0, zero + 1)  # the ranks of g_row < 0, or of g_row > 0
  end = np.where(side == 0, zero, n)

  def found(r: np.ndarray, i: np.ndarray) -> np.ndarray:
    """At or past the edge (rising), before it (falling): false, then true along the ranks."""
    past = np.rad2deg(np.arctan2(values[np.clip(r, 0, n - 1)], g_col[i])) % 180 >= edge[i]
    return past == rising[i]

  # Start from where the line g_row = g_col tan(edge) meets the sorted values; keep that
  # bracket [lo, hi] where it holds the first `found` rank, else search the whole side.
  every = np.arange(len(edge))
  guess = np.searchsorted(values, g_col * np.tan(np.deg2rad(edge)))
  lo, hi = np.clip(guess - 4, first, end), np.clip(guess + 4, first, end)
  ok = ((lo == first) | ~found(lo - 1, every)) & ((hi == end) | found(hi, every))
  lo, hi = np.where(ok, lo, first), np.where(ok, hi, end)
  active = np.flatnonzero(lo < hi)
  while len(active):  # binary search for the first `found` rank in [lo, hi]
    mid = (lo[active] + hi[active]) // 2
    hit = found(mid, active)
    hi[active[hit]] = mid[hit]
    lo[active[~hit]] = mid[~hit] + 1
    active = active[lo[active] < hi[active]]
  # The search assumed monotone angles; check that around every threshold.
  for d in range(1, 3):
    assert ((lo - d < first) | ~found(lo - d, every)).all(), "angle not monotone in rank"
    assert ((lo + d - 1 >= end) | found(lo + d - 1, every)).all(), "angle not monotone in rank"
  thresholds = np.where(rising, lo, 1 - lo).astype(np.int32).reshape(shape)
  return values.astype(np.float32), rank, zero, thresholds


def _sqrt_gradients(images: jax.Array, orientations: int):
  """uint8 `[H, W, C, B]` -> square-root gradients (row, col; float32: the float64 ones
  rounded once) and the bin (0..n-1) scikit-image's float64 puts each in, `[H, W, C, B]`."""
  values, rank, zero, thresholds = _sqrt_thresholds(orientations)
  rank = jnp.asarray(rank)
  x = images.astype(jnp.int32)

  def ranks(ahead, behind, axis):  # rank of sqrt(ahead) - sqrt(behind); zero on the border
    r = rank[ahead * 256 + behind]
    pad = [(0, 0)] * r.ndim
    pad[axis] = (1, 1)
    return jnp.pad(r, pad, constant_values=zero)

  r_row = ranks(x[2:], x[:-2], 0)
  r_col = ranks(x[:, 2:], x[:, :-2], 1)
  thr = jnp.asarray(thresholds)[r_col]  # [..., 2, n]
  thr = jnp.where((r_row > zero)[..., None], thr[..., 1, :], thr[..., 0, :])
  key = jnp.where(r_col >= zero, r_row, -r_row)[..., None]
  bins = jnp.where(r_row == zero, 0, jnp.sum(key >= thr, axis=-1))
  values = jnp.asarray(values)
  return values[r_row], values[r_col], bins


def _cell_histograms_bm(
    images: jax.Array, orientations: int, pixels_per_cell: tuple[int, int],
    transform_sqrt: bool = False,
) -> jax.Array:
  """`[B, H, W, C]` -> cell histograms `[H // ch, W // cw, orientations, B]` (batch minor).

  The batch is moved to the last (minor) axis, so every step is an elementwise
  vector op across images and the sums over a cell's pixels add whole vectors;
  with the batch first, XLA reduced short rows of 16 pixels (1.7x slower).

  A gradient folded into the upper half plane lies at or past edge t iff
  `cos(t) g_row >= sin(t) g_col`; cumulative sums over those masks give the
  histogram without an arctan2 (exact for integer images, checked at build time).
  """
  integer = jnp.issubdtype(images.dtype, jnp.integer)
  sqrt_bins = None
  if transform_sqrt and integer:
    g_row, g_col, sqrt_bins = _sqrt_gradients(jnp.moveaxis(images, 0, -1), orientations)
  else:
    x = jnp.moveaxis(to_float(images), 0, -1)  # [H, W, C, B]
    g_row, g_col = _gradients(jnp.sqrt(x) if transform_sqrt else x)
  if g_row.shape[2] > 1:
    # Squared magnitudes of integer gradients are exact in float32, so ties (first channel
    # wins, as numpy's argmax) are decided as scikit-image decides them in float64.
    pick = jnp.argmax(g_row * g_row + g_col * g_col, axis=2)[:, :, None]
    g_row = jnp.take_along_axis(g_row, pick, 2)
    g_col = jnp.take_along_axis(g_col, pick, 2)
    if sqrt_bins is not None:
      sqrt_bins = jnp.take_along_axis(sqrt_bins, pick, 2)
  g_row, g_col = g_row[:, :, 0], g_col[:, :, 0]  # [H, W, B]
  (ch, cw) = pixels_per_cell
  h, w, b = g_row.shape
  ncr, ncc = h // ch, w // cw
  g_row, g_col = g_row[: ncr * ch, : ncc * cw], g_col[: ncr * ch, : ncc * cw]

  def cell_sum(a):  # [ncr * ch, ncc * cw, B] -> [ncr, ncc, B]
    return a.reshape(ncr, ch, ncc, cw, b).sum((1, 3))

  magnitude = jnp.sqrt(g_row * g_row + g_col * g_col)
  directions = _edge_directions(orientations) if integer and not transform_sqrt else None
  if sqrt_bins is not None:
    sqrt_bins = sqrt_bins[: ncr * ch, : ncc * cw, 0]
    past = [sqrt_bins >= k for k in range(1, orientations)]
  elif directions is None:
    angle = jnp.mod(jnp.rad2deg(jnp.arctan2(g_row, g_col)), 180.0)
    edges = _bin_edges(orientations)
    past = [angle >= edges[k] for k in range(1, orientations)]
  else:
    flip = (g_row < 0) | ((g_row == 0) & (g_col < 0))
    gr, gc = jnp.where(flip, -g_row, g_row), jnp.where(flip, -g_col, g_col)
    cos, sin = directions
    # Two products compared (not subtracted): XLA may fuse `a*b - c*d` into an FMA, which
    # would break the exact ties at 45 and 90 degrees.
    past = [cos[k] * gr >= sin[k] * gc for k in range(orientations - 1)]
  total = cell_sum(magnitude)
  cumulative = [total] + [cell_sum(jnp.where(m, magnitude, 0.0)) for m in past]
  cumulative = jnp.stack(cumulative + [jnp.zeros_like(total)], axis=2)  # [ncr, ncc, n + 1, B]
  return (cumulative[:, :, :-1] - cumulative[:, :, 1:]) / (ch * cw)


def _normalize_blocks_bm(hist: jax.Array, cells_per_block: tuple[int, int], block_norm: str):
  """`[Ncr, Ncc, n, B]` -> normalised blocks `[Nbr, Nbc, bh, bw, n, B]` (batch minor)."""
  bh, bw = cells_per_block
  ncr, ncc = hist.shape[:2]
  nbr, nbc = ncr - bh + 1, ncc - bw + 1
  rows = [jnp.stack([hist[i : i + nbr, j : j + nbc] for j in range(bw)], axis=2)
          for i in range(bh)]
  blocks = jnp.stack(rows, axis=2)  # [Nbr, Nbc, bh, bw, n, B]
  axes = (2, 3, 4)
  if block_norm == "L1":
    return blocks / (jnp.sum(jnp.abs(blocks), axes, keepdims=True) + _EPS)
  if block_norm == "L1-sqrt":
    return jnp.sqrt(blocks / (jnp.sum(jnp.abs(blocks), axes, keepdims=True) + _EPS))
  l2 = lambda v: v / jnp.sqrt(jnp.sum(v * v, axes, keepdims=True) + _EPS**2)  # noqa: E731
  if block_norm == "L2":
    return l2(blocks)
  return l2(jnp.minimum(l2(blocks), 0.2))  # L2-Hys


def cell_histograms(
    images: jax.Array, orientations: int, pixels_per_cell: tuple[int, int]
) -> jax.Array:
  """`[B, H, W, C]` -> per-cell orientation histograms `[B, H // ch, W // cw, orientations]`."""
  return jnp.moveaxis(_cell_histograms_bm(images, orientations, pixels_per_cell), -1, 0)


def normalize_blocks(hist: jax.Array, cells_per_block: tuple[int, int], block_norm: str):
  """`[B, Ncr, Ncc, n]` cell histograms -> `[B, Nbr, Nbc, bh, bw, n]` normalised blocks."""
  blocks = _normalize_blocks_bm(jnp.moveaxis(hist, 0, -1), cells_per_block, block_norm)
  return jnp.moveaxis(blocks, -1, 0)


def hog_features(
    images: jax.Array,
    *,
    orientations: int = 9,
    pixels_per_cell: tuple[int, int] = (8, 8),
    cells_per_block: tuple[int, int] = (3, 3),
    block_norm: str = "L2-Hys",
    transform_sqrt: bool = False,
) -> jax.Array:
  """HOG descriptors of a batch: `[B, H, W, C]` -> `[B, D]` float32, as `skimage.feature.hog`
  (`channel_axis=-1` for C > 1) computes on each image."""
  if images.ndim != 4:
    raise ConfigError(f"HOG takes [B, H, W, C] images, got shape {images.shape}.")
  ppc = _pair(pixels_per_cell, "pixels_per_cell")
  cpb = _pair(cells_per_block, "cells_per_block")
  if block_norm not in BLOCK_NORMS:
    raise ConfigError(f"Unknown block_norm {block_norm!r}; choose one of {', '.join(BLOCK_NORMS)}.")
  hog_output_dim(images.shape[1:3], orientations, ppc, cpb)
  hist = _cell_histograms_bm(images, orientations, ppc, transform_sqrt)
  blocks = _normalize_blocks_bm(hist, cpb, block_norm)
  return blocks.reshape(-1, blocks.shape[-1]).T


@EXTRACTORS.register("hog")
def build_hog(
    *,
    image_shape: tuple[int, int, int],
    train_images=None,
    orientations: int = 9,
    pixels_per_cell: int | tuple[int, int] = 4,
    cells_per_block: int | tuple[int, int] = 2,
    block_norm: str = "L2-Hys",
    transform_sqrt: bool = False,
) -> FeatureFn:
  """HOG; defaults suit 28x28 images (9 x 2x2 cells x 6x6 blocks = 1,296 features).
  `transform_sqrt` takes the square root of the image first, as scikit-image's option."""
  del train_images
  ppc = _pair(pixels_per_cell, "pixels_per_cell")
  cpb = _pair(cells_per_block, "cells_per_block")
  if block_norm not in BLOCK_NORMS:
    raise ConfigError(f"Unknown block_norm {block_norm!r}; choose one of {', '.join(BLOCK_NORMS)}.")
  hog_output_dim(image_shape[:2], int(orientations), ppc, cpb)
  if not isinstance(transform_sqrt, (bool, np.bool_)):
    raise ConfigError(f"transform_sqrt must be True or False, got {transform_sqrt!r}.")
  if transform_sqrt:
    _sqrt_thresholds(int(orientations))  # build once, outside any trace
  return functools.partial(
      hog_features, orientations=int(orientations), pixels_per_cell=ppc, cells_per_block=cpb,
      block_norm=block_norm, transform_sqrt=bool(transform_sqrt),
  )
