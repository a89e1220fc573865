"""Deterministic accelerator runs: XLA's deterministic-ops flag, set before the backend starts.

On the CPU every XLA program already gives the same bits each time. On a GPU some
kernels do not: scatter-adds and reductions with atomics, and the convolution
algorithms the autotuner picks in one process and not in another. A run killed and
resumed then ends with other parameters than an uninterrupted one (issue 17 saw it on
an H200). `--xla_gpu_deterministic_ops=true` makes XLA use only deterministic kernels.
It costs some speed on a GPU (benchmarks/results/ names the measured cost) and nothing on
a CPU, where XLA ignores it.

XLA reads `XLA_FLAGS` once, when the first backend starts, so `config.deterministic`
acts only if it is applied before then: `experiments.main` and `train_and_evaluate` do
it first thing. If a backend already started without the flag (a notebook that used JAX
before), the run goes on and says so, and summary.json records
`xla_deterministic_ops: false`.
"""

from __future__ import annotations

import os
import re

from absl import logging

FLAG = "--xla_gpu_deterministic_ops"
_FLAG_RE = re.compile(r"--xla_gpu_deterministic_ops(=\S*)?")


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # no public API says whether a backend started
  except ImportError:  # pragma: no cover - a JAX that moved it: assume the worst
    return True
  return bool(xla_bridge.backends_are_initialized())


def flag_value(xla_flags: str | None = None) -> bool:
  """Whether `xla_flags` (default: the environment's `XLA_FLAGS`) turns the flag on.

  The last occurrence wins, as in XLA's own parser; `--xla_gpu_deterministic_ops`
  alone means true.
  """
  text = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
  found = _FLAG_RE.findall(text)
  if not found:
    return False
  return found[-1].lstrip("=").lower() in ("", "true", "1")


def with_flag(xla_flags: str, on: bool) -> str:
  """`xla_flags` with every occurrence of the flag replaced by one saying `on`."""
  rest = _FLAG_RE.sub("", xla_flags).split()
  return " ".join([*rest, f"{FLAG}={'true' if on else 'false'}"])


def apply(deterministic: bool) -> bool:
  """Sets the flag in `XLA_FLAGS` for `deterministic`; returns whether it is in effect.

  Before any backend starts, the environment is rewritten and the answer is
  `deterministic`. After, nothing can change: the answer is what the backend started
  with, with a warning if that differs from what was asked.
  """
  if not _backends_started():
    os.environ["XLA_FLAGS"] = with_flag(os.environ.get("XLA_FLAGS", ""), deterministic)
    return deterministic
  in_effect = flag_value()
  import jax  # started already: this costs nothing

  if in_effect != deterministic and jax.default_backend() != "cpu":
    logging.warning(
        "config.deterministic=%s, but JAX's backend started before the config was read, with "
        "XLA_FLAGS=%r; XLA's deterministic-ops flag stays %s for this process. Start a fresh "
        "process, or set XLA_FLAGS=%s=%s before JAX starts.", deterministic,
        os.environ.get("XLA_FLAGS", ""), "on" if in_effect else "off", FLAG,
        "true" if deterministic else "false",
    )
  return in_effect
