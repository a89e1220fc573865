"""Metrics as files: one JSON line per logged step, plus `config.json` and `summary.json`.

Tables are built from these files, not from logs. `metrics.jsonl` holds only
values that depend on (config, seed), never wall-clock times, so two runs of
the same config give byte-identical files; timings go to `summary.json`.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
  """Writes `obj` as JSON via a temporary file and a rename: never half-written."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


class MetricWriter:
  """Appends one JSON object per line to `WORKDIR/metrics.jsonl`, flushed per line."""

  def __init__(self, path: pathlib.Path, *, truncate: bool = True, enabled: bool = True):
    """`enabled=False` (processes other than 0 in a multi-host job) writes nothing."""
    self.path = path
    self._file = open(path, "w" if truncate else "a") if enabled else None

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


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f if line.strip()]
