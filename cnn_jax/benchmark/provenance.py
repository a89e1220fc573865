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


def config_hash(config: ml_collections.ConfigDict) -> str:
  """A stable short hash of a config (sorted JSON)."""
  text = config.to_json(sort_keys=True) if hasattr(config, "to_json") else json.dumps(config)
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
