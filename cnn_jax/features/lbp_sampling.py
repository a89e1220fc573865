"""Where LBP samples its P neighbours, and how each neighbour's bit is decided exactly.

scikit-image places neighbour i at `(r - R sin(2 pi i / P), c + R cos(2 pi i / P))`, offsets
rounded to 5 decimals, and reads it by float64 bilinear interpolation of the 2x2 pixels
around it (outside pixels = 0):

  v = (1 - dr) * ((1 - dc) * tl + dc * tr) + dr * ((1 - dc) * bl + dc * br),  bit = v >= centre

with `dr`, `dc` the fractional parts of the float64 positions (they vary in the last bits
from row to row: the *float classes* below).

On integer images this bit is computed here without float64, in int32:

* The ideal weights are integers / 1e5 (p = 1e5 - DR, q = DR for rows; s, t for columns),
  so `1e10 (v_ideal - centre) = N = p y1 + q y2`, `y1 = s (tl - c) + t (tr - c)`,
  `y2 = s (bl - c) + t (br - c)`: an exact integer, its sign found from two int32 limbs.
  When N != 0, |v_ideal - centre| >= 1e-10, more than the float64 weights and roundings
  move v (checked when the plan is built: true up to about 1,000 pixels a side, a warning
  past that), so bit = N > 0.
* When N = 0 (a tie: v is the centre up to float64 rounding), the bit is what
  scikit-image's float64 rounding makes of it, read from tables built here with the same
  numpy float64 operations, in one of two forms:
  - `keyed`: ties form the family y1 = q' k, y2 = -p' k (p', q' = p, q over their gcd), so
    the outcome is a table over (float class, centre, k), k read off y1 by a shift and a
    mask;
  - `error` (when that family is too large, e.g. dr = 0.5): the outcome is
    `fl(X + Y) >= centre` with X = fl(u1 top), Y = fl(u2 bottom); at a tie the ideal parts
    of X and Y sum to the centre, so only their float64 errors count: integer tables of
    floor(2^K error) per (float class, pixel pair) and a sticky bit decide it exactly.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import math
import warnings

import numpy as np

SCALE = 100_000  # offsets have 5 decimals, so ideal weights are integers / SCALE
_YMAX = 255 * SCALE  # |y1|, |y2| bound
_KEYED_MAX_K = 40_000  # larger tie families use the `error` rule
_DIRECT_MAX = 2**22  # keyed tables up to this size index k directly, larger ones compress k
_F_LIMIT = 2**28  # |floor(2^K error)|: sums of three stay inside int32


@dataclasses.dataclass(frozen=True)
class Axis:
  """One offset along one image axis: the two pixels it blends and its float classes."""

  lo: int  # pixel offset of the first (top / left) pixel
  hi: int  # ... of the second; == lo when the offset is a whole number
  ideal: int  # fractional part x SCALE (the ideal weight of the second pixel)
  fracs: np.ndarray  # [n_classes] float64 fractional parts, as scikit-image computes them
  cls: np.ndarray  # [n] class of each row / column


def offsets(points: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
  """Row and column offsets of the P neighbours, exactly as scikit-image computes them."""
  angles = 2 * np.pi * np.arange(points, dtype=np.float64) / points
  return np.round(-radius * np.sin(angles), 5), np.round(radius * np.cos(angles), 5)


def _axis(offset: float, n: int) -> Axis:
  index = np.arange(n, dtype=np.float64)
  pos = index + offset
  lo, hi = np.floor(pos), np.ceil(pos)
  lo_off, hi_off = np.unique(lo - index), np.unique(hi - index)
  assert len(lo_off) == 1 and len(hi_off) == 1, (offset, lo_off, hi_off)
  fracs, cls = np.unique(pos - lo, return_inverse=True)
  ideal = round(offset * SCALE) % SCALE
  assert np.all(np.abs(fracs - ideal / SCALE) < 1e-9), (offset, fracs)
  return Axis(int(lo_off[0]), int(hi_off[0]), ideal, fracs, cls.astype(np.int32))


def _weights(frac: float) -> tuple[float, float]:
  return float(np.float64(1) - np.float64(frac)), float(frac)


def _blend_first_stage(w: tuple[float, float]) -> np.ndarray:
  """float64 `(1 - dc) * a + dc * b` for every pixel pair, `[256 * a + b]`."""
  v = np.arange(256, dtype=np.float64)
  return (w[0] * v[:, None] + w[1] * v[None, :]).ravel()


def _weight_deviation(rows: Axis, cols: Axis) -> fractions.Fraction:
  """How far scikit-image's float64 weights stray from the ideal ones (sum over the four)."""
  worst = fractions.Fraction(0)
  for fr in rows.fracs:
    for fc in cols.fracs:
      u, w = _weights(fr), _weights(fc)
      ideal_u = (SCALE - rows.ideal, rows.ideal)
      ideal_w = (SCALE - cols.ideal, cols.ideal)
      dev = sum(
          abs(fractions.Fraction(u[i]) * fractions.Fraction(w[j])
              - fractions.Fraction(ideal_u[i] * ideal_w[j], SCALE * SCALE))
          for i in range(2) for j in range(2)
      )
      worst = max(worst, dev)
  return worst


@dataclasses.dataclass(frozen=True)
class Neighbour:
  """One sampling point: its pixels, integer weights and tie rule (tables are numpy)."""

  rows: Axis
  cols: Axis
  rule: str  # "exact" (no ties to resolve), "keyed" or "error"
  cls: np.ndarray  # [H, W] which table (float classes that resolve ties alike share one)
  key_shift: int = 0  # keyed: a tie's key is (y1 >> key_shift) & (2^key_bits - 1)
  key_bits: int = 0  # 0: one column, no key
  k_column: np.ndarray | None = None  # [2^key_bits] column of a key in `table` (None: the key)
  table: np.ndarray | None = None  # keyed: [tables, 256 centres, columns] bool
  err_top: np.ndarray | None = None  # [tables, 65536] int32: 2 floor(2^K eX) + sticky
  err_bottom: np.ndarray | None = None  # [tables, 65536] int32: floor(2^K eY)
  err_half_gap: np.ndarray | None = None  # [tables, 256] int32: 2^K (z - pred(z)) / 2

  @property
  def p(self) -> int:
    return SCALE - self.rows.ideal

  @property
  def q(self) -> int:
    return self.rows.ideal

  @property
  def s(self) -> int:
    return SCALE - self.cols.ideal

  @property
  def t(self) -> int:
    return self.cols.ideal


def _stage_tables(rows: Axis, cols: Axis):
  """Per col class the first-stage float64 values `[256 * a + b]`; ideal numerators."""
  tops = [_blend_first_stage(_weights(fc)) for fc in cols.fracs]
  v = np.arange(256, dtype=np.int64)
  s, t = SCALE - cols.ideal, cols.ideal
  numer = (s * v[:, None] + t * v[None, :]).ravel()
  return tops, numer


def _sorted_unique(v: np.ndarray) -> np.ndarray:
  v = np.sort(v)
  return v[np.r_[True, v[1:] != v[:-1]]]


def _index(v: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
  return np.clip(np.searchsorted(sorted_values, v), 0, len(sorted_values) - 1)


def _member(v: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
  return sorted_values[_index(v, sorted_values)] == v


def _keyed(rows: Axis, cols: Axis, cls: np.ndarray) -> Neighbour | None:
  """Ties as a (float class, centre, k) table, or None if the family is too large."""
  p, q = SCALE - rows.ideal, rows.ideal
  g = math.gcd(p, q)
  p1, q1 = p // g, q // g
  k_max = 0 if q1 == 0 else _YMAX // max(p1, q1)
  if k_max > _KEYED_MAX_K:
    return None
  tops, numer = _stage_tables(rows, cols)
  order = np.argsort(numer, kind="stable")
  sorted_numer = numer[order]
  first = np.r_[True, sorted_numer[1:] != sorted_numer[:-1]]
  uniq = sorted_numer[first]
  group = np.cumsum(first) - 1
  by_numer = []
  for top in tops:
    vals = top[order]
    if not np.all(vals == vals[first][group]):
      return None  # the float64 first stage is not a function of its ideal numerator
    by_numer.append(vals[first])
  # k with y1 = q' k and y2 = -p' k both reachable, y = s (a - z) + t (b - z); then per centre.
  x = np.arange(-255, 256, dtype=np.int64)
  reach = _sorted_unique(((SCALE - cols.ideal) * x[:, None] + cols.ideal * x[None, :]).ravel())
  k = reach[reach % q1 == 0] // q1 if q1 else np.zeros(1, np.int64)
  k = k[_member(-p1 * k, reach)]
  z = np.arange(256, dtype=np.int64)[:, None]
  n_top, n_bottom = SCALE * z + q1 * k[None, :], SCALE * z - p1 * k[None, :]
  i_top, i_bottom = _index(n_top, uniq), _index(n_bottom, uniq)
  feasible = _member(n_top, uniq) & _member(n_bottom, uniq)
  used = np.flatnonzero(feasible.any(axis=0))
  # At a tie y1 = q' k = 2^v q'' k (q'' odd), so (y1 >> v) mod 2^m, 2^m > 2 k_max, tells the
  # k apart (odd q'' permutes the residues): a key from a shift and a mask, no division.
  shift = (q1 & -q1).bit_length() - 1 if q1 else 0
  bits = max(1, (2 * k_max).bit_length())
  key = ((q1 * k[used]) >> shift) & ((1 << bits) - 1)
  i_top, i_bottom, feasible = i_top[:, used], i_bottom[:, used], feasible[:, used]
  centre = np.broadcast_to(z.astype(np.float64), i_top.shape)
  outcomes = []  # per float class: [256, used k]
  for fr in rows.fracs:
    u = _weights(fr)
    for vals in by_numer:
      v = u[0] * vals[i_top] + u[1] * vals[i_bottom]
      outcomes.append(feasible & (v - centre >= 0))
  outcomes, cls = _dedupe(np.stack(outcomes), cls)
  if len(used) == 1:  # one k (often only flat ties): the centre alone picks the outcome
    return Neighbour(rows, cols, "keyed", cls, 0, 0, None, outcomes)
  if (1 << bits) * 256 * len(outcomes) <= _DIRECT_MAX:
    k_column = None  # the key is the column: one gather fewer per pixel
    table = np.zeros((len(outcomes), 256, 1 << bits), bool)
    table[:, :, key] = outcomes
  else:
    k_column = np.zeros(1 << bits, np.int32)
    k_column[key] = np.arange(len(used), dtype=np.int32)
    table = outcomes
  return Neighbour(rows, cols, "keyed", cls, shift, bits, k_column, table)


def _dedupe(tables: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Float classes often resolve every tie alike: keep the distinct tables, remap classes."""
  kept, remap = [], []
  for table in tables:
    same = [i for i, k in enumerate(kept) if np.array_equal(k, table)]
    remap.append(same[0] if same else len(kept))
    if not same:
      kept.append(table)
  return np.stack(kept), np.asarray(remap, np.int32)[cls]


_FIVE10 = 5**10
_INV_FIVE10 = np.uint64(pow(5**10, -1, 2**64))


def _exact_int(x: np.ndarray, k: int) -> np.ndarray:
  """`x * 2^k` mod 2^64 (uint64) for float64 `x` whose `x * 2^k` are integers."""
  m, e = np.frexp(x)
  mant = np.ldexp(m, 53).astype(np.int64).astype(np.uint64)  # x = mant 2^(e - 53)
  shift = e.astype(np.int64) - 53 + k
  up = mant << np.clip(shift, 0, 63).astype(np.uint64)
  down = mant >> np.clip(-shift, 0, 63).astype(np.uint64)
  return np.where(shift >= 64, np.uint64(0), np.where(shift >= 0, up, down))


def _scaled_error(x: np.ndarray, ideal: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """`floor(2^k (x - ideal / 1e10))` (int64) and whether it is not an integer.

  `x * 2^k` are integers, `ideal` are int64 numerators < 2^42 and k >= 10. The error is
  small, so it is computed mod 2^64 (uint64 arithmetic wraps) and exact: with
  `ideal 2^(k-10) = 5^10 quot + rem`, `quot = (ideal 2^(k-10) - rem) / 5^10 mod 2^64`
  (5^10 is odd, so invertible mod 2^64).
  """
  j = k - 10
  rem = (ideal % _FIVE10) * pow(2, j, _FIVE10) % _FIVE10  # < 2^48: exact in int64
  shifted = ideal.astype(np.uint64) << np.uint64(j) if j < 64 else np.zeros_like(ideal, np.uint64)
  quot = (shifted - rem.astype(np.uint64)) * _INV_FIVE10
  ceil = quot + (rem != 0).astype(np.uint64)
  return (_exact_int(x, k) - ceil).view(np.int64), rem != 0


def _binary_places(x: np.ndarray) -> int:
  """The smallest k with every `x * 2^k` an integer."""
  m, e = np.frexp(x[x != 0])
  mant = np.ldexp(m, 53).astype(np.int64)
  lowest = np.log2(mant & -mant).astype(np.int64)  # trailing zero bits
  return int((53 - e - lowest).max())


def _error(rows: Axis, cols: Axis, cls: np.ndarray) -> Neighbour:
  """Ties decided by the float64 errors of the two half-blends (see the module doc)."""
  p, q = SCALE - rows.ideal, rows.ideal
  tops, numer = _stage_tables(rows, cols)
  err_top, err_bottom, half_gap = [], [], []
  z = np.arange(1, 256, dtype=np.float64)
  gaps = z - np.nextafter(z, 0)  # powers of two
  for fr in rows.fracs:
    u = _weights(fr)
    for top in tops:
      x, y = u[0] * top, u[1] * top
      k = _binary_places(np.concatenate([x, y, gaps / 2]))
      rows_out = []
      for vals, weight in ((x, p), (y, q)):
        f, sticky = _scaled_error(vals, weight * numer, k)
        if np.abs(f).max() >= _F_LIMIT:
          raise ValueError(f"float64 errors too large for int32 tables (2^{k})")
        rows_out.append((f, sticky))
      (fx, sx), (fy, _) = rows_out
      err_top.append((2 * fx + sx).astype(np.int32))
      err_bottom.append(fy.astype(np.int32))
      g = np.r_[1 << 29, _exact_int(gaps / 2, k).astype(np.int64)]  # z = 0: always 1
      half_gap.append(g.astype(np.int32))
  tables, cls = _dedupe(
      np.concatenate([np.stack(err_top), np.stack(err_bottom), np.stack(half_gap)], axis=1), cls)
  return Neighbour(rows, cols, "error", cls, err_top=tables[:, :65536],
                   err_bottom=tables[:, 65536:131072], err_half_gap=tables[:, 131072:])


@functools.lru_cache(maxsize=16)
def plan(points: int, radius: float, h: int, w: int) -> tuple[Neighbour, ...]:
  """The P neighbours of LBP(P, R) on `h x w` images, with their tie tables (built once per
  geometry and image size, in well under a second for P <= 24)."""
  rr, cc = offsets(points, radius)
  out, worst = [], fractions.Fraction(0)
  for dr, dc in zip(rr, cc, strict=True):
    rows, cols = _axis(float(dr), h), _axis(float(dc), w)
    cls = (rows.cls[:, None] * len(cols.fracs) + cols.cls[None, :]).astype(np.int32)
    if rows.ideal == 0 and cols.ideal == 0:
      out.append(Neighbour(rows, cols, "exact", cls))  # a pixel, read exactly
      continue
    worst = max(worst, _weight_deviation(rows, cols))
    out.append(_keyed(rows, cols, cls) or _error(rows, cols, cls))
  # A nonzero N moves v by >= 1e-10; 2^-42 bounds the six float64 roundings of a blend.
  if 255 * worst + fractions.Fraction(1, 2**42) >= fractions.Fraction(1, 10**10):
    warnings.warn(
        f"LBP on {h}x{w} images: float64 positions this large move scikit-image's weights by "
        f"{float(worst):.2g}, so codes may differ from scikit-image's where a neighbour is "
        "within 1e-10 of the centre (exact up to about 1,000 pixels a side).",
        stacklevel=2,
    )
  return tuple(out)
