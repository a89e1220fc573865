"""Shared pieces of the batch-job launchers: the training command and its checks."""

from __future__ import annotations

import shlex

import ml_collections

from cnn_jax.train.parallel import check_batch_size


def config_overrides(argv: list[str]) -> list[str]:
  """The `--config.field=value` flags given to the launcher, passed through unchanged."""
  return [a for a in argv[1:] if a.startswith("--config.")]


def train_command(
    config_path: str, workdir: str, overrides: list[str], python: str = "python"
) -> str:
  """`python -m experiments.main ...` with multi-host initialisation switched on."""
  parts = [
      python, "-m", "experiments.main", f"--config={config_path}", f"--workdir={workdir}",
      *overrides, "--config.distributed.mode=always",
  ]
  return " ".join(shlex.quote(p) for p in parts)


def check_devices(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Fails before anything is submitted when the global batch does not split evenly."""
  check_batch_size(config.batch_size, num_devices)
