"""What a table needs to be reproduced: commit, versions, devices, seeds, config hashes."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import pathlib
import platform
import subprocess
from typing import Any

import jax
import ml_collections

PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "numpy",
    "scikit-learn", "ml-collections",
)


# Fields added to configs after results were committed, with the default that computes
# exactly what the code did before they existed. At that default a field is left out of
# the hash, so finished runs stay valid (a resumed suite does not recompute them); at any
# other value it is hashed like every other field. Keys are dotted paths in a suite
# config ("train." for training runs, "features." / "probe." for probe runs).
HASH_NEUTRAL_DEFAULTS: dict[str, Any] = {
    "train.data.num_train": 0,
    "train.data.augment": [],
    "train.data.source": "device",  # streaming input (issue 18)
    "train.data.stream_threads": 0,
    "train.eval_every_epochs": 1,
    "train.steps_per_call": 1,
    "train.init_from": None,
    "train.train_only": [],
    "train.tensorboard": True,
    "train.deterministic": True,  # XLA's deterministic-ops flag; the CPU ignores it (issue 17)
    "train.compilation_cache": None,  # where compiled steps are cached, not what they compute
    "train.label_smoothing": 0.0,
    "train.cpu_convolutions": "default",  # XLA:CPU's own choice of kernels (issue 17)
    "features.transform_sqrt": False,  # hog: square root of the image first (issue 19)
}


def _drop_neutral(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    path = prefix + key
    if isinstance(value, dict):
      out[key] = _drop_neutral(value, path + ".")
    elif not (path in HASH_NEUTRAL_DEFAULTS and value == HASH_NEUTRAL_DEFAULTS[path]):
      out[key] = value
  return out


def config_hash(config: ml_collections.ConfigDict | dict[str, Any]) -> str:
  """A stable short hash of a config (sorted JSON, `HASH_NEUTRAL_DEFAULTS` left out)."""
  tree = json.loads(config.to_json()) if hasattr(config, "to_json") else config
  text = json.dumps(_drop_neutral(tree), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def _git(*args: str) -> str | None:
  repo = pathlib.Path(__file__).resolve().parents[2]
  try:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
  """(commit, whether tracked files differ from it), read when a suite starts."""
  status = _git("status", "--porcelain", "--untracked-files=no")
  return _git("rev-parse", "HEAD"), (bool(status) if status is not None else None)


def provenance(
    seeds: list[int], hashes: dict[str, str], git: tuple[str | None, bool | None]
) -> dict[str, Any]:
  versions = {}
  for p in PACKAGES:
    try:
      versions[p] = importlib.metadata.version(p)
    except importlib.metadata.PackageNotFoundError:
      versions[p] = None
  return {
      "git_commit": git[0],
      "git_dirty": git[1],
      "python": platform.python_version(),
      "packages": versions,
      "device_kind": jax.devices()[0].device_kind,
      "device_count": jax.device_count(),
      "platform": jax.devices()[0].platform,
      "seeds": seeds,
      "config_hashes": hashes,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
