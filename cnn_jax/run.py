"""A run directory: the one place that knows what a training workdir holds.

  run = Run("workdirs/lenet5_fm")
  run.read_config(); run.read_metrics(); run.read_summary()
  model, variables, config = run.load_model()       # the trained model, ready to apply

Layout (written by `cnn_jax.train`, read by the benchmark, the frozen-CNN
extractor and anything else that looks inside a trained run):

  config.json       the full resolved config
  metrics.jsonl     one JSON line per logged step and per evaluation
  summary.json      final accuracy, parameter count, wall time, throughput, device
  checkpoints/      orbax checkpoints, one folder per step: `state` (arrays) + `meta` (JSON)
  checkpoints_corrupt/   unreadable checkpoints moved aside (never deleted)
  tensorboard/      TensorBoard event files (`tensorboard --logdir WORKDIR`): a view of
                    the run written beside metrics.jsonl, which stays the record

Every JSON file is written atomically (a temporary file, then a rename), so a
kill never leaves half a file; files get the usual permissions (0666 minus umask).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any, Iterable, Self

import ml_collections
import numpy as np

from cnn_jax.errors import ConfigError


def write_text_atomic(path: pathlib.Path, text: str) -> None:
  """Writes `text` to `path` via a temporary file and a rename: never half-written."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
  """`obj` as indented, key-sorted JSON, written atomically."""
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl_atomic(path: pathlib.Path, records: Iterable[dict[str, Any]]) -> None:
  """One key-sorted JSON object per line, written atomically."""
  write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """`{"a": {"b": 1}}` -> `{"a.b": 1}`."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_to_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort(sort_keys=True))


class MetricWriter:
  """Appends one JSON object per line to `metrics.jsonl`, flushed per line."""

  def __init__(self, path: pathlib.Path, *, enabled: bool = True):
    """`enabled=False` (processes other than 0 in a multi-host job) writes nothing."""
    self.path = path
    self._file = open(path, "a") if enabled else None

  def write(self, record: dict[str, Any]) -> None:
    if self._file is not None:
      self._file.write(json.dumps(record, sort_keys=True) + "\n")
      self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _summary_writer_class() -> type:
  """tensorboardX's `SummaryWriter`, imported without PyTorch.

  tensorboardX's writer imports torch when it is installed, only to accept torch tensors
  (which this project never passes): 4 s of a run's start on a 2-core CPU. While it is
  imported, `torch` is marked as absent; a process that has loaded torch already keeps it.
  """
  if "tensorboardX.writer" in sys.modules or "torch" in sys.modules:
    from tensorboardX import SummaryWriter

    return SummaryWriter
  sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX allows
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class TensorBoardWriter:
  """Scalars, histograms, images and text for TensorBoard, through tensorboardX (no TensorFlow).

  Each writer opens a new event file in `directory`, named so that a directory's files
  sort in the order they were opened: TensorBoard reads them in name order, and
  tensorboardX alone names files by the second (two writers opened in the same second
  would write one file). `purge_step=S` tells TensorBoard to drop every event at step
  >= S from the earlier files: a run resumed from its checkpoint at step S - 1 writes
  those steps again. `replace=True` deletes the earlier files of the same `name` first
  (pictures drawn again, a suite's table). `enabled=False` (processes other than 0,
  `config.tensorboard=False`) writes nothing and imports nothing.
  """

  def __init__(
      self, directory: pathlib.Path, *, enabled: bool = True, purge_step: int | None = None,
      name: str = "train", replace: bool = False,
  ):
    self._writer = None
    if enabled:
      SummaryWriter = _summary_writer_class()  # noqa: N806
      if replace and directory.is_dir():
        for old in directory.glob(f"events.out.tfevents.*.{name}"):
          old.unlink()
      self._writer = SummaryWriter(
          str(directory), purge_step=purge_step, filename_suffix=f".{time.time_ns()}.{name}"
      )

  @property
  def enabled(self) -> bool:
    return self._writer is not None

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """One point per tag (`"train/loss"`, ...) at `step`."""
    if self._writer is not None:
      for tag, value in values.items():
        self._writer.add_scalar(tag, float(value), step)

  def histograms(self, step: int, prefix: str, tree: Mapping[str, Any]) -> None:
    """One histogram per array of a nested mapping, tagged `prefix/path/to/array`.

    Arrays holding nan or inf are left out (training reports divergence itself).
    """
    if self._writer is None:
      return
    for key, value in tree.items():
      if isinstance(value, Mapping):
        self.histograms(step, f"{prefix}/{key}", value)
      elif np.all(np.isfinite(value)):
        self._writer.add_histogram(f"{prefix}/{key}", np.asarray(value), step)

  def image(self, step: int, tag: str, pixels: Any) -> None:
    """`pixels`: `[H, W, C]`, C = 1, 3 or 4 (alpha dropped), uint8 or floats in [0, 1]."""
    if self._writer is not None:
      self._writer.add_image(tag, pixels[..., :3], step, dataformats="HWC")

  def text(self, step: int, tag: str, markdown: str) -> None:
    if self._writer is not None:
      self._writer.add_text(tag, markdown, step)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()

  def __enter__(self) -> Self:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class Run:
  """A training run's directory."""

  def __init__(self, workdir: str | os.PathLike):
    self.path = pathlib.Path(workdir)

  def __repr__(self) -> str:
    return f"Run({str(self.path)!r})"

  config_path = property(lambda self: self.path / "config.json")
  metrics_path = property(lambda self: self.path / "metrics.jsonl")
  summary_path = property(lambda self: self.path / "summary.json")
  checkpoint_dir = property(lambda self: self.path / "checkpoints")
  corrupt_dir = property(lambda self: self.path / "checkpoints_corrupt")
  tensorboard_dir = property(lambda self: self.path / "tensorboard")

  # ---------------------------------------------------------------------------- config
  def has_config(self) -> bool:
    return self.config_path.is_file()

  def read_config(self) -> ml_collections.ConfigDict:
    if not self.has_config():
      network = self.path / "train"
      hint = (
          f" It holds a layer-wise pre-training run (experiments.pretrain); name its network, "
          f"{network}." if (network / "config.json").is_file() else ""
      )
      raise ConfigError(
          f"{self.config_path} not found: {self.path} is not a training run of "
          f"experiments.main.{hint}"
      )
    return ml_collections.ConfigDict(json.loads(self.config_path.read_text()))

  def check_config(
      self,
      config: ml_collections.ConfigDict,
      *,
      defaults: ml_collections.ConfigDict,
      ignore: tuple[str, ...] = (),
  ) -> None:
    """Refuses a workdir that holds a run of another config, naming the fields that differ.

    A field missing from the stored config (added to the defaults after the run
    started) counts as unchanged when it holds its default. Fields under `ignore`
    (where a run executes, not what it computes) may change.
    """
    if not self.has_config():
      return
    old = flatten(json.loads(self.config_path.read_text()))
    new = flatten(config_to_json(config))
    default = flatten(config_to_json(defaults))
    changed = sorted(
        k for k in set(old) | set(new)
        if k.split(".")[0] not in ignore and k not in ignore
        and old.get(k, default.get(k)) != new.get(k)
    )
    if changed:
      detail = ", ".join(f"{k}: {old.get(k, default.get(k))!r} -> {new.get(k)!r}" for k in changed)
      raise ConfigError(
          f"{self.path} holds a run with a different config ({detail}). "
          "Use a new --workdir, or delete the old one."
      )

  def write_config(self, config: ml_collections.ConfigDict) -> None:
    write_json_atomic(self.config_path, config_to_json(config))

  # --------------------------------------------------------------------------- metrics
  def read_metrics(self) -> list[dict[str, Any]]:
    """Every complete line of `metrics.jsonl` (a line cut short by a kill is skipped)."""
    if not self.metrics_path.exists():
      return []
    records = []
    for line in self.metrics_path.read_text().splitlines():
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
    return records

  def truncate_metrics(self, step: int, *, rewrite: bool = True) -> list[dict[str, Any]]:
    """Keeps the records up to `step` (what a checkpoint at `step` covers); returns them.

    `rewrite=False` only reads (processes other than 0 must not replace the file
    that process 0 appends to).
    """
    kept = [r for r in self.read_metrics() if r["step"] <= step]
    if rewrite:
      write_jsonl_atomic(self.metrics_path, kept)
    return kept

  def metric_writer(self, *, enabled: bool = True) -> MetricWriter:
    return MetricWriter(self.metrics_path, enabled=enabled)

  def tensorboard_writer(
      self, *, enabled: bool = True, purge_step: int | None = None, name: str = "train",
      replace: bool = False,
  ) -> TensorBoardWriter:
    """A new event file in `tensorboard/` (see `TensorBoardWriter`)."""
    return TensorBoardWriter(
        self.tensorboard_dir, enabled=enabled, purge_step=purge_step, name=name,
        replace=replace,
    )

  # --------------------------------------------------------------------------- summary
  def has_summary(self) -> bool:
    return self.summary_path.is_file()

  def read_summary(self) -> dict[str, Any]:
    return json.loads(self.summary_path.read_text())

  def write_summary(self, summary: dict[str, Any]) -> None:
    write_json_atomic(self.summary_path, summary)

  # ----------------------------------------------------------------------- checkpoints
  def checkpoint_manager(self, *, keep: int | None = None, create: bool = False):
    """Orbax's manager for `checkpoints/`, with the two items every checkpoint holds."""
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        self.checkpoint_dir.absolute(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=create, cleanup_tmp_directories=create
        ),
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )

  def latest_step(self) -> int | None:
    """The step of the latest finished checkpoint (None without one)."""
    if not self.checkpoint_dir.is_dir():
      return None
    manager = self.checkpoint_manager()
    try:
      return manager.latest_step()
    finally:
      manager.close()

  def restore_variables(self) -> dict[str, Any]:
    """`{"params", "batch_stats"}` of the latest checkpoint."""
    import orbax.checkpoint as ocp

    if not self.checkpoint_dir.is_dir():
      raise ConfigError(
          f"No checkpoints in {self.checkpoint_dir}. Train the model first: python -m "
          f"experiments.main --config=configs/<config>.py --workdir={self.path}"
      )
    manager = self.checkpoint_manager()
    try:
      step = manager.latest_step()
      if step is None:
        raise ConfigError(
            f"{self.checkpoint_dir} holds no finished checkpoint; train (or resume) the run."
        )
      restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    finally:
      manager.close()
    state = restored["state"]
    return {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}

  def load_model(self):
    """`(model, variables, config)` of the trained run: `model.apply(variables, x)` works."""
    from cnn_jax.models import model_from_config

    config = self.read_config()
    return model_from_config(config), self.restore_variables(), config
