"""Receptive fields, output sizes and per-layer parameters: "features go from local to global".

A model describes its main path as a list of `LayerSpec`s (kernel, stride,
padding; one per conv / pool / block, named by the module's path in the params
tree). `walk` turns that list and an input size into, per layer, the output size
`n`, the jump `j` (distance in input pixels between neighbouring output units,
the product of the strides so far) and the receptive field `r`:

    n_out = floor((n_in + pad_lo + pad_hi - k) / s) + 1     (ceil for ceil_mode pools)
    j_out = j_in * s
    r_out = r_in + (k - 1) * j_in

The receptive field is the theoretical one (padding counts), so it can exceed
the image. For residual and inception blocks the spec follows the path with the
largest receptive field (the 3x3 convs; the 1x1 shortcut sees less). `report`
checks each computed size against the real output of the module of that name
(traced with `jax.eval_shape`, nothing is computed) and adds its parameter count.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("conv", "maxpool", "avgpool", "block", "pad_to", "adaptive", "global", "dense",
         "shortcut", "branch")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One layer of a model's main path.

  Attributes:
    name: the module's path in the params tree, '/'-joined (e.g. 'layer2_0/conv1').
    kind: one of KINDS. 'global' and 'dense' see every position of their input;
      'shortcut' and 'branch' (e.g. an auxiliary classifier) are side branches: reported,
      not on the receptive-field path;
      'adaptive' pools to `size`; 'pad_to' zero-pads to `size` (no module).
    kernel, stride: square kernel and stride.
    padding: pixels on each side, a (low, high) pair, or 'SAME'.
    ceil_mode: PyTorch's ceil_mode pooling (GoogLeNet).
    size: the output size of 'adaptive' and 'pad_to'.
    feature: the name under which the model sows this layer's output, if any.
  """

  name: str
  kind: str = "conv"
  kernel: int = 1
  stride: int = 1
  padding: int | tuple[int, int] | str = 0
  ceil_mode: bool = False
  size: int = 0
  feature: str | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Unknown layer kind {self.kind!r}. Known kinds: {', '.join(KINDS)}.")


@dataclasses.dataclass(frozen=True)
class Row:
  """A layer's output size, jump, receptive field and the centre of the receptive field
  of its first output unit (`start`; unit `i` is centred at `start + i * jump`), in
  input pixels."""

  spec: LayerSpec
  size: int
  jump: float
  rf: float
  start: float


class InputTooSmallError(ValueError):
  """An input so small that some layer's output would be empty."""


def _pads(spec: LayerSpec, n: int) -> tuple[int, int]:
  p = spec.padding
  if isinstance(p, str):
    if p.upper() != "SAME":
      raise ValueError(f"{spec.name}: padding must be an int, a pair or 'SAME', got {p!r}.")
    total = max((-(-n // spec.stride) - 1) * spec.stride + spec.kernel - n, 0)
    return total // 2, total - total // 2
  if isinstance(p, int):
    return p, p
  return int(p[0]), int(p[1])


def walk(specs: Sequence[LayerSpec], input_size: int) -> list[Row]:
  """Output size, jump and receptive field after each layer for a square input."""
  n, jump, rf, start = input_size, 1.0, 1.0, 0.0
  rows = []
  for spec in specs:
    if spec.kind in ("shortcut", "branch"):
      rows.append(Row(spec, n, jump, rf, start))
      continue
    if spec.kind == "pad_to":
      if n > spec.size:
        raise InputTooSmallError(f"{spec.name}: pads to {spec.size}, but the input is {n}.")
      start -= (spec.size - n) // 2 * jump
      n = spec.size
    elif spec.kind in ("global", "dense"):
      rf += (n - 1) * jump
      start += (n - 1) / 2 * jump
      n = 1
    elif spec.kind == "adaptive":
      if n != spec.size:
        # The widest bin; bins are spaced n / size input units apart.
        widest = max(-(-(i + 1) * n // spec.size) - (i * n) // spec.size for i in range(spec.size))
        start += (-(-n // spec.size) - 1) / 2 * jump
        rf += (widest - 1) * jump
        jump *= n / spec.size
        n = spec.size
    else:
      lo, hi = _pads(spec, n)
      k, s = spec.kernel, spec.stride
      if spec.ceil_mode:
        out = -(-(n + lo + hi - k) // s) + 1
        if (out - 1) * s >= n + lo:
          out -= 1
      else:
        out = (n + lo + hi - k) // s + 1
      if out < 1:
        raise InputTooSmallError(
            f"{spec.name} ({spec.kind} {k}x{k}, stride {s}) gets a {n}x{n} input and would "
            "output nothing"
        )
      rf += (k - 1) * jump
      start += ((k - 1) / 2 - lo) * jump
      jump *= s
      n = out
    rows.append(Row(spec, n, jump, rf, start))
  return rows


@functools.lru_cache(maxsize=256)
def min_input_size(specs: tuple[LayerSpec, ...], limit: int = 4096) -> int:
  """The smallest square input for which every layer has a non-empty output."""
  for size in range(1, limit + 1):
    try:
      walk(specs, size)
      return size
    except InputTooSmallError:
      continue
  raise ValueError(f"No input up to {limit}x{limit} fits these layers.")


def check_input_size(specs: Sequence[LayerSpec], x: jax.Array, model: str, fix: str) -> None:
  """Raises a `ValueError` that says how to fix it when `x` is too small for `specs`.

  Called by the models at trace time, so a too-small input fails with this
  message instead of deep inside XLA.
  """
  _, h, w, _ = x.shape
  for n in (h, w):
    try:
      walk(specs, n)
    except InputTooSmallError as e:
      smallest = min_input_size(tuple(specs))
      raise ValueError(
          f"{model} needs inputs of at least {smallest}x{smallest}, got {h}x{w}: {e}. {fix}"
      ) from None


# Specs of the models whose files predate this module (their layout is fixed).


def _lenet5_specs(model) -> list[LayerSpec]:
  return [
      LayerSpec("pad", "pad_to", size=32),
      LayerSpec("c1", kernel=5, feature="C1"),
      LayerSpec("s2", f"{model.pool}pool", 2, 2, feature="S2"),
      LayerSpec("c3", kernel=5, feature="C3"),
      LayerSpec("s4", f"{model.pool}pool", 2, 2, feature="S4"),
      LayerSpec("c5", kernel=5, feature="C5"),
      LayerSpec("f6", "dense", feature="F6"),
      LayerSpec("out", "dense"),
  ]


def _simple_cnn_specs(model) -> list[LayerSpec]:
  specs = []
  for i in range(len(model.conv_features)):
    specs.append(LayerSpec(f"block{i + 1}/conv", kernel=model.kernel_size, padding="SAME"))
    specs.append(LayerSpec(f"block{i + 1}/pool", f"{model.pool}pool", 2, 2, feature=f"conv{i + 1}"))
  specs += [LayerSpec(f"dense{i + 1}", "dense", feature=f"fc{i + 1}")
            for i in range(len(model.dense_features))]
  return specs + [LayerSpec("output", "dense")]


def layer_specs(model) -> list[LayerSpec]:
  """The main-path `LayerSpec`s of a model instance (its `layer_specs()` method)."""
  if hasattr(model, "layer_specs"):
    return list(model.layer_specs())
  from cnn_jax.models.lenet import LeNet5
  from cnn_jax.models.simple_cnn import SimpleCNN

  if isinstance(model, LeNet5):
    return _lenet5_specs(model)
  if isinstance(model, SimpleCNN):
    return _simple_cnn_specs(model)
  raise ValueError(f"{type(model).__name__} has no layer_specs(); add one to report its layers.")


# The report.


@dataclasses.dataclass(frozen=True)
class ReportRow:
  name: str
  kind: str
  kernel: int
  stride: int
  padding: str
  shape: tuple[int, ...] | None  # the module's real output shape without the batch axis
  size: int
  jump: float
  rf: float
  params: int
  feature: str | None


@dataclasses.dataclass(frozen=True)
class Report:
  input_shape: tuple[int, int, int]
  rows: list[ReportRow]
  total_params: int

  def row(self, name_or_feature: str) -> ReportRow:
    for r in self.rows:
      if name_or_feature in (r.name, r.feature):
        return r
    raise KeyError(f"No layer or feature {name_or_feature!r}: {[r.name for r in self.rows]}")


def _subtree(tree: Any, path: str) -> Any:
  for key in path.split("/"):
    if not isinstance(tree, dict) or key not in tree:
      return None
    tree = tree[key]
  return tree


def _count(tree: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree))) if tree is not None else 0


def trace(model, input_size: int, channels: int) -> dict[str, Any]:
  """Shapes of params, batch stats and every module's output (nothing is computed)."""
  x = jax.ShapeDtypeStruct((1, input_size, input_size, channels), jnp.float32)
  init = functools.partial(model.init, capture_intermediates=True, mutable=True, train=False)
  return jax.eval_shape(init, jax.random.key(0), x)


def report(model, input_size: int, channels: int) -> Report:
  """Per layer: the real output shape, size, jump, receptive field and parameter count."""
  specs = layer_specs(model)
  variables = trace(model, input_size, channels)
  params = variables.get("params", {})
  captured = variables.get("intermediates", {})
  rows = []
  for r in walk(specs, input_size):
    s = r.spec
    out = _subtree(captured, s.name)
    shape = None
    if out is not None and "__call__" in out:
      shape = tuple(out["__call__"][0].shape[1:])
      if s.kind not in ("shortcut", "branch") and len(shape) == 3 and shape[:2] != (r.size, r.size):
        raise AssertionError(
            f"{s.name}: the spec gives {r.size}x{r.size} but the module outputs {shape[:2]}; "
            "the model's layer_specs() is out of date."
        )
    pad = s.padding if isinstance(s.padding, str) else str(s.padding)
    if s.ceil_mode:
      pad += ",ceil"
    rows.append(ReportRow(s.name, s.kind, s.kernel, s.stride, pad, shape, r.size, r.jump, r.rf,
                          _count(_subtree(params, s.name)), s.feature))
  return Report((input_size, input_size, channels), rows, _count(params))


def _fmt_num(v: float) -> str:
  return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


def format_report(rep: Report) -> str:
  """The report as a text table; RF marked '*' once it covers the whole input."""
  size = rep.input_shape[0]
  header = f"{'layer':<22} {'feature':<12} {'kind':<9} {'k/s/p':<12} {'output':<14} " \
           f"{'jump':>6} {'RF':>7} {'params':>13}"
  lines = [header, "-" * len(header)]
  lines.append(f"{'input':<22} {'':<12} {'':<9} {'':<12} "
               f"{'x'.join(map(str, rep.input_shape)):<14} {1:>6} {1:>7} {'':>13}")
  listed = 0
  channels = rep.input_shape[2]
  for r in rep.rows:
    if r.kind in ("conv", "maxpool", "avgpool", "block", "shortcut"):
      ksp = f"{r.kernel}/{r.stride}/{r.padding}"
    elif r.kind == "branch":
      ksp = ""
    elif r.kind in ("adaptive", "pad_to"):
      ksp = f"-> {r.size}"
    else:
      ksp = "all"
    if r.shape is not None:
      shape = "x".join(map(str, r.shape))
      if r.kind not in ("shortcut", "branch"):
        channels = r.shape[-1]
    else:  # no module (e.g. LeNet-5's padding): channels are unchanged
      shape = f"{r.size}x{r.size}x{channels}"
    if r.kind in ("shortcut", "branch"):
      jump, rf = "", "-"
    else:
      jump = _fmt_num(r.jump) if r.kind not in ("dense", "global") else "-"
      rf = _fmt_num(r.rf) + ("*" if r.rf >= size else " ")
    lines.append(f"{r.name:<22} {r.feature or '':<12} {r.kind:<9} {ksp:<12} {shape:<14} "
                 f"{jump:>6} {rf:>7} {r.params:>13,}")
    listed += r.params
  if listed != rep.total_params:
    lines.append(f"{'(other layers)':<22} {'':<12} {'':<9} {'':<12} {'':<14} {'':>6} {'':>7} "
                 f"{rep.total_params - listed:>13,}")
  lines.append("-" * len(header))
  lines.append(f"total parameters: {rep.total_params:,}   (* = receptive field covers the "
               f"whole {size}x{size} input)")
  return "\n".join(lines)


def effective_receptive_field(
    feature_fn, input_size: int, channels: int, row: int, col: int
) -> np.ndarray:
  """Empirical receptive field: the input pixels the gradient of one output unit reaches.

  `feature_fn(x) -> [1, H', W', C]`; returns a boolean `[input_size, input_size]`
  mask of pixels with a nonzero gradient of `sum_c feature[0, row, col, c]`.
  Used in tests to cross-check `walk` (a random, all-nonzero network has the
  theoretical receptive field, clipped to the image).
  """
  def unit(x):
    return jnp.sum(feature_fn(x)[0, row, col])

  x = jnp.ones((1, input_size, input_size, channels), jnp.float32)
  g = jax.grad(unit)(x)
  return np.asarray(jnp.any(g[0] != 0, axis=-1))


__all__ = [
    "LayerSpec", "Report", "Row", "check_input_size", "effective_receptive_field",
    "format_report", "layer_specs", "min_input_size", "report", "walk",
]
