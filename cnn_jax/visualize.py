"""What the units learned: top-activating patches, first-layer filters, feature maps.

  from cnn_jax import visualize
  visualize.visualize_run("workdirs/lenet5_fm", layers=["C1", "C3"])   # -> W/visualize/*.png

A unit of a conv layer is one channel at one position `(y, x)` of its feature
map; it sees only its receptive field. `cnn_jax.models.receptive_field.walk`
gives each layer's jump `j` (input pixels between neighbouring units) and
receptive field `r`, so the unit at `(y, x)` sees the model-input box

    rows [y*j - offset, y*j - offset + r),  columns [x*j - offset, x*j - offset + r)

where `offset = (r - 1) / 2 - start` and `start` is the centre of unit 0's field
(`Row.start`): every layer's padding moves it. LeNet-5 zero-pads 28x28 to 32x32
(2 pixels each side) and its convs are VALID, so C1's offset is 2 (unit 0 sees
rows -2..2: two rows of padding) and C3's (j=2, r=14) is 2 as well.

Model-input pixels are stored-image pixels unless `config.data.image_size`
resizes the images (bilinearly, in `Normalization`). Then the box is mapped
back exactly: resizing is linear and separable, so resizing an identity matrix
gives, per axis, the weight of each stored pixel in each model-input pixel, and
the stored box is the range of stored pixels with a nonzero weight in the
(clipped) model-input box. A box that reaches outside the image (into padding)
is clipped at the border and flagged `clipped`.

`top_patches` finds, per channel, the `top` largest activations over a whole
split in one jit-compiled `lax.scan` over batches: each batch's activations
`[B*positions]` per channel go through `lax.top_k`, merged with the running
top-k carried on the device (ties go to the earlier image). The top-k runs over
images and positions together, so one image can appear twice (a pattern seen at
two neighbouring positions). Dense (non-spatial) features have one "position":
their patch is the whole image.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import data as data_lib
from cnn_jax.errors import ConfigError
from cnn_jax.models import receptive_field as rf_lib
from cnn_jax.run import Run, write_json_atomic

OUTSIDE = (1.0, 0.65, 0.25)  # the fill of a clipped patch's part outside the image (orange)
CLIPPED_FRAME = "red"
MAX_MAPS = 64  # feature maps (and filters) drawn per layer


# ------------------------------------------------------------------------------- geometry
def feature_shapes(model: nn.Module, variables: Any, input_shape) -> dict[str, tuple[int, ...]]:
  """Name -> shape (without the batch axis) of every sown intermediate feature."""
  _, state = jax.eval_shape(
      functools.partial(model.apply, train=False, mutable=["intermediates"]),
      variables, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32),
  )
  return {k: tuple(v[0].shape[1:]) for k, v in state.get("intermediates", {}).items()}


def resize_support(stored: int, size: int) -> np.ndarray:
  """`[stored, size]` bool: does stored pixel i enter model-input pixel p (per axis)?"""
  if stored == size:
    return np.eye(size, dtype=bool)
  weights = jax.image.resize(jnp.eye(stored, dtype=jnp.float32), (stored, size), "bilinear")
  return np.abs(np.asarray(weights)) > 1e-6


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Where the units of one sown feature look in the input.

  Attributes:
    feature: the sown name.
    shape: the feature's shape without the batch axis (`[H, W, C]` or `[C]`).
    jump, rf, offset: unit (y, x) sees model-input rows `[y*jump - offset, + rf)`.
    input_size: the model's input side (config.data.image_size, or the stored size).
    stored_size: the stored images' side.
  """

  feature: str
  shape: tuple[int, ...]
  jump: int
  rf: int
  offset: int
  input_size: int
  stored_size: int

  @property
  def spatial(self) -> bool:
    return len(self.shape) == 3

  @property
  def channels(self) -> int:
    return self.shape[-1]

  @property
  def positions(self) -> int:
    return self.shape[0] * self.shape[1] if self.spatial else 1

  def input_box(self, y: int, x: int) -> tuple[int, int, int, int]:
    """`(y0, y1, x0, x1)`, half-open, in model-input pixels (may reach outside)."""
    if not self.spatial:
      return 0, self.input_size, 0, self.input_size
    y0, x0 = y * self.jump - self.offset, x * self.jump - self.offset
    return y0, y0 + self.rf, x0, x0 + self.rf

  def _stored_range(self, lo: int, hi: int) -> tuple[int, int, int, int]:
    """Stored pixels `[a, b)` of model-input pixels `[lo, hi)`, and the stored pixels the
    box reaches outside the image before / after (for drawing)."""
    n, m = self.input_size, self.stored_size
    clo, chi = max(lo, 0), min(hi, n)
    rows = np.flatnonzero(_support(m, n)[:, clo:chi].any(axis=1))
    scale = m / n
    if not rows.size:  # a field wholly in the padding: an empty box
      return 0, 0, round((hi - lo) * scale), 0
    return (int(rows[0]), int(rows[-1]) + 1, round((clo - lo) * scale),
            round((hi - chi) * scale))

  def box(self, y: int, x: int) -> dict[str, Any]:
    """The unit's field in stored pixels, clipped at the border: box, input box, clipped."""
    iy0, iy1, ix0, ix1 = self.input_box(y, x)
    y0, y1, pad_top, pad_bottom = self._stored_range(iy0, iy1)
    x0, x1, pad_left, pad_right = self._stored_range(ix0, ix1)
    return {
        "box": [y0, y1, x0, x1], "input_box": [iy0, iy1, ix0, ix1],
        "clipped": bool(min(iy0, ix0) < 0 or max(iy1, ix1) > self.input_size),
        "outside": [pad_top, pad_bottom, pad_left, pad_right],
    }


@functools.lru_cache(maxsize=16)
def _support(stored: int, size: int) -> np.ndarray:
  return resize_support(stored, size)


def geometries(
    model: nn.Module, variables: Any, input_size: int, channels: int, stored_size: int
) -> dict[str, Geometry]:
  """Every sown feature that can be shown: spatial ones on the model's receptive-field path,
  and dense ones (whose patch is the whole image)."""
  shapes = feature_shapes(model, variables, (input_size, input_size, channels))
  try:
    rows = {r.spec.feature: r for r in rf_lib.walk(rf_lib.layer_specs(model), input_size)
            if r.spec.feature and r.spec.kind not in ("shortcut", "branch")}
  except ValueError:
    rows = {}
  order = [n for n in rows if n in shapes] + [n for n in shapes if n not in rows]
  out = {}
  for name in order:  # in the model's layer order
    shape = shapes[name]
    if len(shape) == 1:
      out[name] = Geometry(name, shape, input_size, input_size, 0, input_size, stored_size)
    elif len(shape) == 3 and name in rows:
      r = rows[name]
      offset = (r.rf - 1) / 2 - r.start
      if not all(float(v).is_integer() for v in (r.jump, r.rf, offset)):
        continue  # fractional jumps (adaptive pools): no exact pixel box
      out[name] = Geometry(name, shape, int(r.jump), int(r.rf), int(offset), input_size,
                           stored_size)
  return out


def default_layer(geoms: dict[str, Geometry], model: nn.Module) -> str:
  """The last sown conv feature with a map larger than 1x1 (else the last spatial one,
  else the last one)."""
  kinds = {s.feature: s.kind for s in _specs(model)}
  spatial = [g.feature for g in geoms.values() if g.spatial and g.positions > 1]
  conv = [n for n in spatial if kinds.get(n) in ("conv", "block")]
  return (conv or spatial or list(geoms))[-1]


def _specs(model: nn.Module) -> list[rf_lib.LayerSpec]:
  try:
    return rf_lib.layer_specs(model)
  except ValueError:
    return []


def check_layers(layers: Sequence[str], geoms: dict[str, Geometry]) -> None:
  unknown = [n for n in layers if n not in geoms]
  if unknown:
    raise ConfigError(
        f"Unknown layer {', '.join(map(repr, unknown))}; the layers that can be shown are: "
        f"{', '.join(geoms)}."
    )


# --------------------------------------------------------------------------- the top-k pass
def top_patches(
    model: nn.Module,
    variables: Any,
    images: np.ndarray,
    normalize,
    layers: Sequence[str],
    top: int = 9,
    batch_size: int = 1000,
) -> dict[str, dict[str, np.ndarray]]:
  """Per layer and channel, the `top` largest activations over all images and positions.

  Args:
    images: uint8 `[N, H, W, C]`, the whole split (copied to the device once).
    normalize: uint8 batch -> model input (e.g. `data.Normalization`), as in training.
    layers: sown feature names.
  Returns:
    layer -> {"value": [C, k] float32, "image": [C, k], "position": [C, k] (flat
    y * W + x)}, best first, k = min(top, N * positions).
  """
  n = len(images)
  batch_size = max(1, min(batch_size, n))
  steps = -(-n // batch_size)
  padded = np.zeros((steps * batch_size, *images.shape[1:]), images.dtype)
  padded[:n] = images
  batches = jnp.asarray(padded.reshape(steps, batch_size, *images.shape[1:]))
  features = _features_fn(model, normalize, tuple(layers))
  positions = [s.shape[1] for s in jax.eval_shape(features, variables, batches[0])]
  out = _top_pass(features, int(top), batch_size, n)(variables, batches)
  result = {}
  for name, (values, ids), p in zip(layers, jax.device_get(out), positions):
    k = min(top, n * p)
    ids = ids[:, :k]
    result[name] = {"value": values[:, :k], "image": ids // p, "position": ids % p}
  return result


def _features_fn(model, normalize, layers):
  """uint8 batch -> per layer the activations `[B, positions, C]` (float32)."""

  def features(variables, images):
    _, state = model.apply(variables, normalize(images), train=False, mutable=["intermediates"])
    out = []
    for name in layers:
      f = state["intermediates"][name][0].astype(jnp.float32)
      out.append(f.reshape(f.shape[0], -1, f.shape[-1]))
    return out

  return features


def _top_pass(features, top, batch_size, n):
  """The jit-compiled pass: `(variables, [steps, B, H, W, C]) -> per layer (values, ids)`,
  ids = image * positions + position, best first."""

  @jax.jit
  def run(variables, batches):
    shapes = jax.eval_shape(features, variables, batches[0])
    init = [(jnp.full((s.shape[2], top), -jnp.inf, jnp.float32),
             jnp.full((s.shape[2], top), -1, jnp.int32)) for s in shapes]

    def step(carry, xs):
      index, images = xs
      first = index * batch_size
      new = []
      for (best, best_ids), f in zip(carry, features(variables, images)):
        b, p, c = f.shape
        valid = first + jnp.arange(b) < n  # the zero images padding the last batch
        f = jnp.where(valid[:, None, None], f, -jnp.inf).reshape(b * p, c).T  # [C, B*P]
        values, idx = jax.lax.top_k(f, min(top, b * p))
        values = jnp.concatenate([best, values], axis=1)  # the running best first: ties
        ids = jnp.concatenate([best_ids, first * p + idx.astype(jnp.int32)], axis=1)
        values, pick = jax.lax.top_k(values, top)
        new.append((values, jnp.take_along_axis(ids, pick, axis=1)))
      return new, None

    steps = batches.shape[0]
    carry, _ = jax.lax.scan(step, init, (jnp.arange(steps, dtype=jnp.int32), batches))
    return carry

  return run


def most_active_units(values: np.ndarray, units: int) -> list[int]:
  """The `units` channels with the largest maximum activation, in channel order."""
  order = np.argsort(-values[:, 0], kind="stable")[:units]
  return sorted(int(c) for c in order)


def patch_records(
    geom: Geometry, result: dict[str, np.ndarray], units: Sequence[int]
) -> list[dict[str, Any]]:
  """One record per (unit, rank): image, position, stored-pixel box, clipped, activation."""
  width = geom.shape[1] if geom.spatial else 1
  records = []
  for unit in units:
    for rank in range(result["value"].shape[1]):
      value = float(result["value"][unit, rank])
      if not math.isfinite(value):
        continue
      pos = int(result["position"][unit, rank])
      y, x = divmod(pos, width)
      records.append({"unit": int(unit), "rank": rank, "image": int(result["image"][unit, rank]),
                      "position": [y, x], "activation": value, **geom.box(y, x)})
  return records


# --------------------------------------------------------------------------------- drawing
def _plt():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
  """uint8 `[h, w, C]` -> float RGB in [0, 1] (grey images repeated to 3 channels)."""
  x = pixels.astype(np.float32) / 255.0
  return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]


def patch_canvas(image: np.ndarray, record: dict[str, Any]) -> np.ndarray:
  """The record's stored-pixel crop, with the part of its field outside the image filled
  with `OUTSIDE`."""
  y0, y1, x0, x1 = record["box"]
  top, bottom, left, right = record["outside"]
  canvas = np.empty((top + y1 - y0 + bottom, left + x1 - x0 + right, 3), np.float32)
  canvas[:] = OUTSIDE
  canvas[top:top + y1 - y0, left:left + x1 - x0] = _as_rgb(image[y0:y1, x0:x1])
  return canvas


def draw_top_patches(
    images: np.ndarray, geom: Geometry, records: list[dict[str, Any]], path: pathlib.Path,
    title: str = "",
) -> None:
  """One row per unit, its patches best first, the activation under each."""
  plt = _plt()
  units = sorted({r["unit"] for r in records})
  cols = max([r["rank"] for r in records], default=0) + 1
  fig, axes = plt.subplots(len(units), cols, figsize=(1.1 * cols + 0.6, 1.25 * len(units) + 0.5),
                           squeeze=False)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
      spine.set_visible(False)
  row_of = {u: i for i, u in enumerate(units)}
  for r in records:
    ax = axes[row_of[r["unit"]], r["rank"]]
    ax.imshow(patch_canvas(images[r["image"]], r), interpolation="nearest")
    v = r["activation"]
    ax.set_xlabel(f"{v:.4f}" if abs(v) < 100 else f"{v:.4g}", fontsize=7, labelpad=2)
    if r["clipped"]:
      for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color(CLIPPED_FRAME)
        spine.set_linewidth(2)
  for u, i in row_of.items():
    axes[i, 0].set_ylabel(f"unit {u}", fontsize=8)
  fig.suptitle(title or f"{geom.feature}: top {cols} patches per unit", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def first_conv_kernel(model: nn.Module, variables: Any) -> tuple[str, np.ndarray] | None:
  """(name, kernel `[kh, kw, C_in, K]`) of the model's first conv layer."""
  specs = [s for s in _specs(model) if s.kind == "conv"]
  params = variables["params"]
  candidates = [(s.feature or s.name.replace("/", "_"), s.name) for s in specs[:1]]
  for label, path in candidates:
    tree = params
    for key in path.split("/"):
      tree = tree.get(key, {}) if isinstance(tree, dict) else {}
    kernels = [x for p, x in jax.tree_util.tree_leaves_with_path(tree)
               if np.ndim(x) == 4 and "kernel" in jax.tree_util.keystr(p)]
    if kernels:
      return label, np.asarray(kernels[0], np.float32)
  return None


def draw_filters(kernel: np.ndarray, path: pathlib.Path, title: str) -> None:
  """Each kernel as an image: RGB (min-max scaled) for 3 input channels, otherwise the
  mean over input channels on a blue-white-red scale symmetric about 0."""
  plt = _plt()
  k = min(kernel.shape[-1], MAX_MAPS)
  cols = min(k, 8)
  rows = -(-k // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.2 * rows + 0.4), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for i in range(k):
    w = kernel[..., i]
    ax = axes.flat[i]
    if w.shape[-1] == 3:
      ax.imshow((w - w.min()) / (np.ptp(w) or 1.0), interpolation="nearest")
    else:
      w = w.mean(axis=-1)
      lim = float(np.abs(w).max()) or 1.0
      ax.imshow(w, cmap="bwr", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_title(f"{i}", fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def feature_maps(model: nn.Module, variables: Any, image: np.ndarray, normalize) -> dict:
  """Every sown feature of one uint8 image `[H, W, C]`, without the batch axis."""
  _, state = jax.jit(functools.partial(model.apply, train=False, mutable=["intermediates"]))(
      variables, normalize(jnp.asarray(image[None])))
  return {k: np.asarray(v[0][0], np.float32) for k, v in state["intermediates"].items()}


def draw_feature_maps(image: np.ndarray, maps: dict[str, np.ndarray], path: pathlib.Path,
                      title: str) -> None:
  """The image, then per spatial layer its channels (up to MAX_MAPS), 16 a row."""
  plt = _plt()
  cols = 16
  layers = [(k, v) for k, v in maps.items() if v.ndim == 3 and v.shape[0] * v.shape[1] > 1]
  rows = 1 + sum(-(-min(v.shape[-1], MAX_MAPS) // cols) for _, v in layers)
  fig, axes = plt.subplots(rows, cols, figsize=(0.8 * cols, 0.9 * rows + 0.4), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  axes[0, 0].imshow(_as_rgb(image), interpolation="nearest")
  axes[0, 0].set_title("input", fontsize=7)
  row = 1
  for name, v in layers:
    for c in range(min(v.shape[-1], MAX_MAPS)):
      ax = axes[row + c // cols, c % cols]
      ax.imshow(v[..., c], cmap="viridis", interpolation="nearest")
      ax.set_title(f"{name}:{c}", fontsize=6)
    row += -(-min(v.shape[-1], MAX_MAPS) // cols)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# ------------------------------------------------------------------------------ a whole run
def open_run(workdir: str | pathlib.Path):
  """`(model, variables, config)` of a trained run, or a ConfigError saying how to make one."""
  run = Run(workdir)
  if not run.has_config() or not run.checkpoint_dir.is_dir():
    missing = "config.json" if not run.has_config() else "checkpoints/"
    raise ConfigError(
        f"{run.path} holds no trained run (no {missing}). Train one first, e.g. python -m "
        f"experiments.main --config=configs/lenet5_fashion_mnist.py --workdir={run.path}"
    )
  return run.load_model()


def visualize_run(
    workdir: str | pathlib.Path,
    *,
    layers: Sequence[str] | None = None,
    units: int = 16,
    top: int = 9,
    split: str = "test",
    image: int = 0,
    batch_size: int = 1000,
    splits: tuple[data_lib.Split, data_lib.Split] | None = None,
) -> list[pathlib.Path]:
  """Writes the pictures of a trained run into `workdir/visualize/`; returns their paths.

  Args:
    layers: sown features for the top patches (default: `default_layer`).
    units: how many channels per layer (the most active ones).
    top: patches per unit.
    split: the split searched for top patches (and holding `image`).
    image: the index of the image whose feature maps are drawn.
    splits: `(train, split)` already loaded (the train split gives the normalisation).
  Nothing in `workdir` outside `visualize/` is written but a new TensorBoard event file
  holding the pictures (`add_to_tensorboard`).
  """
  run = Run(workdir)
  model, variables, config = open_run(workdir)
  dc = config.data
  if splits is None:
    load = functools.partial(data_lib.load_split, dc.name, data_dir=dc.get("data_dir"),
                             tfds_dir=dc.get("tfds_dir"), download=bool(dc.get("download")))
    splits = (load("train"), load(split))
  train, evaluated = splits
  stored = evaluated.images.shape[1]
  size = int(dc.get("image_size", 0) or 0) or stored
  geoms = geometries(model, variables, size, evaluated.images.shape[-1], stored)
  layers = list(layers) if layers else [default_layer(geoms, model)]
  check_layers(layers, geoms)
  if units < 1 or top < 1:
    raise ConfigError(f"--units and --top must be at least 1, got {units} and {top}.")
  if not 0 <= image < len(evaluated.images):
    raise ConfigError(f"--image={image} is outside the {split} split "
                      f"(0..{len(evaluated.images) - 1}).")
  normalize = data_lib.Normalization.from_images(train.images, size)
  variables = jax.tree.map(jnp.asarray, variables)
  out_dir = run.path / "visualize"
  out_dir.mkdir(exist_ok=True)
  written = []
  found = top_patches(model, variables, evaluated.images, normalize, layers, top, batch_size)
  what = f"{config.model.name} on {dc.name} ({split})"
  for name in layers:
    geom = geoms[name]
    chosen = most_active_units(found[name]["value"], units)
    records = patch_records(geom, found[name], chosen)
    png, js = out_dir / f"top_patches_{name}.png", out_dir / f"top_patches_{name}.json"
    draw_top_patches(evaluated.images, geom, records, png,
                     f"{what}: {name}, receptive field {geom.rf}x{geom.rf}, jump {geom.jump}\n"
                     "red frame, orange: field clipped at the image border")
    write_json_atomic(js, {
        "layer": name, "model": config.model.name, "dataset": dc.name, "split": split,
        "jump": geom.jump, "rf": geom.rf, "offset": geom.offset, "input_size": geom.input_size,
        "stored_size": geom.stored_size, "spatial": geom.spatial, "units": chosen,
        "boxes": "stored-image pixels [y0, y1, x0, x1), half-open, clipped at the border; "
                 "input_box: model-input pixels, unclipped; outside: pixels of the field "
                 "beyond the border (top, bottom, left, right)",
        "patches": records,
    })
    written += [png, js]
  conv = first_conv_kernel(model, variables)
  if conv is not None:
    path = out_dir / f"filters_{conv[0]}.png"
    draw_filters(conv[1], path, f"{what}: {conv[0]} kernels")
    written.append(path)
  maps = feature_maps(model, variables, evaluated.images[image], normalize)
  maps = {k: maps[k] for k in [*geoms, *maps] if k in maps}  # in the model's layer order
  path = out_dir / f"feature_maps_{image}.png"
  label = ""
  if evaluated.class_names:
    label = f", label {evaluated.class_names[int(evaluated.labels[image])]}"
  draw_feature_maps(evaluated.images[image], maps, path, f"{what}: image {image}{label}")
  written.append(path)
  add_to_tensorboard(run, config, [p for p in written if p.suffix == ".png"])
  return written


def add_to_tensorboard(run: Run, config, pngs: Sequence[pathlib.Path]) -> None:
  """The pictures as images `visualize/<name>` in the run's TensorBoard event files, at
  the step of the checkpoint they show: one file in `tensorboard/` that replaces the one
  an earlier call wrote. Not when the run was trained with `config.tensorboard=False`."""
  if not config.get("tensorboard", True):
    return
  plt = _plt()
  with run.tensorboard_writer(name="visualize", replace=True) as tb:
    step = run.latest_step() or 0
    for png in pngs:
      tb.image(step, f"visualize/{png.stem}", plt.imread(png))


__all__ = [
    "Geometry", "add_to_tensorboard", "check_layers", "default_layer", "draw_feature_maps",
    "draw_filters", "draw_top_patches", "feature_maps", "feature_shapes", "first_conv_kernel",
    "geometries", "most_active_units", "open_run", "patch_records", "resize_support",
    "top_patches", "visualize_run",
]
