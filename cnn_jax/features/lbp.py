"""Local binary patterns (Ojala et al. 2002), code for code as `skimage.feature.local_binary_pattern`.

P = 8 neighbours on the circle of radius R = 1, numbered counter-clockwise from
the right (`r - sin(2 pi i / P)`, `c + cos(2 pi i / P)`, rounded to 5 decimals as
scikit-image does). The four axial neighbours are pixels; the four diagonal ones
are bilinear blends of 4 pixels with weights from {0.70711, 0.29289}, outside
pixels = 0. Neighbour i's bit is `neighbour >= centre`.

Exactness on uint8 images: with integer pixels, the sign of
`blend - centre` is `sign(A x + B y)` (A = 70711, B = 29289, x = diagonal -
centre, y = sum of the two axial pixels - 2 centre), computed in int32. Since
gcd(A, B) = 1 and |x| < B, it is zero only when x = y = 0; there scikit-image's
float64 rounding decides, and a table of its float64 outcomes (built once per
image size from the same float64 operations) decides here too.

`uniform` codes: the number of set bits when the bit string has at most two 0/1
transitions (scikit-image counts transitions along i = 0..P-1 without wrapping
around), else P + 1: codes 0..P+1. `default`: sum of bit_i 2^i, codes 0..2^P-1.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import ConfigError
from cnn_jax.features.base import EXTRACTORS, FeatureFn
from cnn_jax.features.hog import _pair

P, R = 8, 1
METHODS = {"uniform": P + 2, "default": 2**P}
_A, _B = 70711, 29289  # the blend weights x 1e5; gcd = 1
_OFFSETS_R = np.round(-R * np.sin(2 * np.pi * np.arange(P) / P), 5)
_OFFSETS_C = np.round(R * np.cos(2 * np.pi * np.arange(P) / P), 5)
_STEPS = [(int(np.sign(dr)), int(np.sign(dc))) for dr, dc in zip(_OFFSETS_R, _OFFSETS_C)]
_DIAGONALS = [i for i, (a, b) in enumerate(_STEPS) if a and b]


def _fraction_classes(offset: float, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Distinct float64 fractional parts of `i + offset`, i < n, and each i's class."""
  frac = np.array([(i + offset) - np.floor(i + offset) for i in range(n)])
  return np.unique(frac, return_inverse=True)


@functools.lru_cache(maxsize=8)
def _tie_table(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """scikit-image's float64 bit for every tie (diagonal = centre, axial pixels centre +- k).

  Returns the table `[4, NR, NC, 256, 511]` (bool) and the row / column class of each
  position per diagonal `[4, H]`, `[4, W]`.
  """
  c = np.arange(256, dtype=np.float64)[:, None]
  k = np.arange(-255, 256, dtype=np.float64)[None, :]
  row_cls, col_cls, tables = [], [], []
  for i in _DIAGONALS:
    fr, rc = _fraction_classes(_OFFSETS_R[i], h)
    fc, cc = _fraction_classes(_OFFSETS_C[i], w)
    row_cls.append(rc)
    col_cls.append(cc)
    sr, sc = _STEPS[i]
    table = np.zeros((len(fr), len(fc), 256, 511), bool)
    for a, dr in enumerate(fr):
      for b, dc in enumerate(fc):
        # grid[row][col] with row 0 = top (min row), col 0 = left (min col).
        cr = 1 if sr < 0 else 0
        ccol = 0 if sc > 0 else 1
        grid = [[None, None], [None, None]]
        grid[cr][ccol] = c + 0 * k
        grid[cr][1 - ccol] = c + k  # same row as the centre
        grid[1 - cr][ccol] = c - k  # same column as the centre
        grid[1 - cr][1 - ccol] = c + 0 * k  # the diagonal pixel
        top = (1 - dc) * grid[0][0] + dc * grid[0][1]
        bottom = (1 - dc) * grid[1][0] + dc * grid[1][1]
        table[a, b] = ((1 - dr) * top + dr * bottom) - c >= 0
    tables.append(table)
  nr = max(t.shape[0] for t in tables)
  nc = max(t.shape[1] for t in tables)
  full = np.zeros((len(_DIAGONALS), nr, nc, 256, 511), bool)
  for d, t in enumerate(tables):
    full[d, : t.shape[0], : t.shape[1]] = t
  return full, np.stack(row_cls), np.stack(col_cls)


def lbp_bits(images: jax.Array) -> jax.Array:
  """uint8 `[B, H, W]` -> neighbour bits `[B, H, W, 8]` (bool)."""
  if jnp.issubdtype(images.dtype, jnp.floating):
    raise ConfigError("LBP takes integer (uint8) images; float images make ties ill-defined.")
  b, h, w = images.shape
  table, row_cls, col_cls = _tie_table(h, w)
  nr, nc = table.shape[1:3]
  table = jnp.asarray(table.reshape(-1))
  x = jnp.pad(images.astype(jnp.int32), ((0, 0), (1, 1), (1, 1)))
  centre = x[:, 1:-1, 1:-1]

  def shifted(dr: int, dc: int) -> jax.Array:
    return x[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

  bits = []
  for i, (sr, sc) in enumerate(_STEPS):
    if not (sr and sc):
      bits.append(shifted(sr, sc) >= centre)
      continue
    d = _DIAGONALS.index(i)
    same_row, same_col = shifted(0, sc), shifted(sr, 0)
    dx = shifted(sr, sc) - centre
    dy = same_row + same_col - 2 * centre
    key = _A * dx + _B * dy  # |key| < 2^26: exact in int32
    cls = jnp.asarray(row_cls[d])[:, None] * nc + jnp.asarray(col_cls[d])[None, :]  # [H, W]
    index = (((d * nr * nc) + cls[None]) * 256 + centre) * 511 + (same_row - centre + 255)
    tie = (dx == 0) & (dy == 0)
    tie_bit = jnp.take(table, jnp.where(tie, index, 0), mode="clip")
    bits.append((key > 0) | (tie & tie_bit))
  return jnp.stack(bits, axis=-1)


def lbp_codes(images: jax.Array, method: str = "uniform") -> jax.Array:
  """uint8 `[B, H, W]` -> LBP codes `[B, H, W]` int32 (P=8, R=1), as scikit-image."""
  if method not in METHODS:
    raise ConfigError(f"Unknown LBP method {method!r}; choose one of {', '.join(METHODS)}.")
  bits = lbp_bits(images).astype(jnp.int32)
  if method == "default":
    return jnp.sum(bits * (2 ** jnp.arange(P, dtype=jnp.int32)), axis=-1)
  changes = jnp.sum(bits[..., 1:] != bits[..., :-1], axis=-1)
  return jnp.where(changes <= 2, jnp.sum(bits, axis=-1), P + 1)


def lbp_features(
    images: jax.Array,
    *,
    pixels_per_cell: tuple[int, int] = (7, 7),
    method: str = "uniform",
) -> jax.Array:
  """Per-cell LBP code histograms: `[B, H, W, C]` uint8 -> `[B, cells_r * cells_c * C * bins]`.

  Each histogram is the fraction of the cell's pixels with each code; cells that
  do not fit at the bottom/right are dropped.
  """
  b, h, w, c = images.shape
  ch, cw = pixels_per_cell
  ncr, ncc = h // ch, w // cw
  planes = jnp.moveaxis(images, -1, 1).reshape(b * c, h, w)
  codes = lbp_codes(planes, method)[:, : ncr * ch, : ncc * cw]
  onehot = jax.nn.one_hot(codes, METHODS[method], dtype=jnp.float32)
  hist = onehot.reshape(b, c, ncr, ch, ncc, cw, -1).mean(axis=(3, 5))
  return jnp.moveaxis(hist, 1, 3).reshape(b, -1)


@EXTRACTORS.register("lbp")
def build_lbp(
    *,
    image_shape: tuple[int, int, int],
    train_images=None,
    pixels_per_cell: int | tuple[int, int] = 7,
    method: str = "uniform",
    points: int = P,
    radius: int = R,
) -> FeatureFn:
  """LBP histograms; defaults: 4x4 cells of 7x7 on 28x28, 10 uniform codes -> 160 features."""
  del train_images
  if (points, radius) != (P, R):
    raise ConfigError(
        f"LBP is implemented (exactly, as scikit-image) for points={P}, radius={R}; got "
        f"points={points}, radius={radius}."
    )
  if method not in METHODS:
    raise ConfigError(f"Unknown LBP method {method!r}; choose one of {', '.join(METHODS)}.")
  ppc = _pair(pixels_per_cell, "pixels_per_cell")
  h, w = image_shape[:2]
  if ppc[0] > h or ppc[1] > w:
    raise ConfigError(
        f"LBP cells of {ppc[0]}x{ppc[1]} pixels are larger than the {h}x{w} image; "
        "use smaller pixels_per_cell."
    )
  _tie_table(h, w)  # build once, outside any trace
  return functools.partial(lbp_features, pixels_per_cell=ppc, method=method)
