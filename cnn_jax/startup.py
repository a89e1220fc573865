"""Start-up trace: where the time goes between a command and its first training step.

Off (every call a no-op) unless `$CNN_JAX_STARTUP_TRACE` names a file. Then each
`mark(name)` appends a line `mark <name> <unix time>` to it, and the JAX compilation
events (tracing, lowering, XLA compile, persistent-cache hits and misses) are appended
as `event <name> <seconds>` lines as they happen. `benchmarks/startup.py` runs
`experiments.main` with it set and turns the lines into a breakdown. Importing this
module costs nothing (it imports JAX only when tracing is on and JAX is already loaded
by the caller).
"""

from __future__ import annotations

import os
import time

ENV = "CNN_JAX_STARTUP_TRACE"
# Set to 1: exit right after the first training step has finished (`first_step_done`),
# so a start-up measurement does not wait for the whole run.
EXIT_ENV = "CNN_JAX_STARTUP_EXIT"


def enabled() -> bool:
  return bool(os.environ.get(ENV))


def _append(line: str) -> None:
  with open(os.environ[ENV], "a") as f:
    f.write(line + "\n")


def mark(name: str) -> None:
  """Records that the phase `name` ended now (nothing unless tracing is on)."""
  if enabled():
    _append(f"mark {name} {time.time():.6f}")


def listen_to_compiles() -> None:
  """Appends JAX's compile-time events (durations and cache hits/misses) to the trace."""
  if not enabled() or getattr(listen_to_compiles, "done", False):
    return
  listen_to_compiles.done = True
  import jax.monitoring

  def duration(event: str, seconds: float, **kwargs) -> None:
    if event.startswith(("/jax/core/compile/", "/jax/compilation_cache/")):
      _append(f"event {event} {seconds:.6f} {kwargs.get('fun_name', '-')}")

  def count(event: str, **kwargs) -> None:
    del kwargs
    if event.startswith("/jax/compilation_cache/"):
      _append(f"event {event} 1")

  jax.monitoring.register_event_duration_secs_listener(duration)
  jax.monitoring.register_event_listener(count)


def backend_started() -> None:
  """Tracing only: starts JAX's backend now and marks it, so its start-up (on a GPU: CUDA,
  its libraries and the device memory) is a phase of its own instead of part of whichever
  phase would first touch a device. Call it once the backend may start (flags set)."""
  if not enabled():
    return
  import jax

  jax.devices()
  mark("backend_started")


def first_step_done(result) -> None:
  """Marks the end of the first training step, waiting for `result` (tracing only), and
  exits the process there when `$CNN_JAX_STARTUP_EXIT=1`."""
  if not enabled():
    return
  import jax

  jax.block_until_ready(result)
  mark("first_step_done")
  if os.environ.get(EXIT_ENV) == "1":
    os._exit(0)  # noqa: SLF001 - a measurement run: nothing after this step is wanted
