"""Data parallelism from one CPU to many accelerators and hosts.

Two compilation wrappers around the same `steps.train_step`:

* `jit` (default): a 1-D device mesh with a `data` axis; parameters and
  optimiser state replicated (`NamedSharding(mesh, P())`), each global batch
  split along `data`; one `jax.jit` with explicit shardings and donated state.
  XLA computes BatchNorm statistics over the global batch, so results do not
  depend on the device count. The same code runs on several hosts: every
  process holds the (small) split in host memory, the device arrays are global,
  and each device gathers only its own rows of every global batch.
* `pmap` (`--config.parallelism=pmap`): one replica per local device, the state
  carries a leading device axis, gradients and metrics are `lax.pmean`-ed, and
  BatchNorm layers average their statistics over the `data` axis.

Multi-host: `initialize_distributed(config)` calls `jax.distributed.initialize`
when the config names a coordinator, or the environment is a multi-task SLURM
job or a TPU pod; only process 0 writes metrics and summaries (orbax
coordinates checkpoint writes itself).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cnn_jax.errors import ConfigError
from cnn_jax.train import steps

DATA_AXIS = "data"
MODES = ("jit", "pmap")

# `config.cpu_convolutions`: which kernels XLA:CPU runs the steps' convolutions with.
# "default" is what XLA does unasked: in jaxlib 0.10 it hands convolutions (and matrix
# products and reductions) to YNNPACK "library fusions" (the 2-conv CNN's 5x5 conv2 kernel
# gradient runs on one thread there: as long on one core as on two); every committed table
# was computed so. "eigen" asks for every library fusion type XLA uses by default except
# convolutions, so XLA runs those with its own Eigen kernels on every core: faster steps on
# the 2-core Xeon this project measures on (benchmarks/results/train_speed_cpu.txt,
# cpu_step_pieces_cpu.txt), other rounding, and bits that may depend on the number of cores
# (Eigen splits the work by thread: a kernel gradient differed in its last bits between one
# core and two).
CPU_CONVOLUTIONS = {
    "default": None,
    "eigen": {"xla_cpu_experimental_ynn_fusion_type":
              "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"},
}


def _wants_distributed(dc: ml_collections.ConfigDict) -> bool:
  if dc.coordinator_address:
    return True
  if dc.mode == "auto":
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ
    tpu_pod = len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1
    return slurm or tpu_pod
  return dc.mode == "always"


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """Joins a multi-process JAX job when the config or environment asks for one.

  Explicit: `--config.distributed.coordinator_address=HOST:PORT
  --config.distributed.num_processes=N --config.distributed.process_id=I`.
  Otherwise JAX reads SLURM's or the TPU pod's environment itself.
  """
  dc = config.distributed
  if dc.mode not in ("auto", "always", "never"):
    raise ConfigError(f"distributed.mode must be auto, always or never, got {dc.mode!r}.")
  if not _wants_distributed(dc) or jax.distributed.is_initialized():
    return
  kwargs: dict[str, Any] = {}
  if dc.coordinator_address:
    kwargs = dict(
        coordinator_address=dc.coordinator_address,
        num_processes=dc.num_processes or None,
        process_id=dc.process_id if dc.process_id >= 0 else None,
    )
  if os.environ.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  logging.info(
      "Process %d of %d; %d local / %d global devices.", jax.process_index(),
      jax.process_count(), jax.local_device_count(), jax.device_count(),
  )


def cpu_compiler_options(cpu_convolutions: str, mode: str = "jit") -> dict[str, Any] | None:
  """The `compiler_options` of the steps' `jax.jit`s for `config.cpu_convolutions` (None:
  XLA's defaults, and always off the CPU, where the choice does not apply)."""
  if cpu_convolutions not in CPU_CONVOLUTIONS:
    raise ConfigError(
        f"Unknown cpu_convolutions {cpu_convolutions!r}. "
        f"Known: {', '.join(map(repr, CPU_CONVOLUTIONS))}."
    )
  options = CPU_CONVOLUTIONS[cpu_convolutions]
  if options is None or jax.default_backend() != "cpu":
    return None
  if mode == "pmap":
    raise ConfigError(
        f"cpu_convolutions={cpu_convolutions!r} needs parallelism='jit' (jax.pmap takes no "
        "compiler options); set --config.parallelism=jit or --config.cpu_convolutions=default."
    )
  error = _xla_rejects(tuple(options.items()))
  if error:
    raise ConfigError(
        f"cpu_convolutions={cpu_convolutions!r} sets XLA options {options}, which this jaxlib "
        f"({jax.__version__}) rejects ({error}); use --config.cpu_convolutions=default."
    )
  return options


@functools.cache  # once a process: a benchmark suite builds its steps once per run
def _xla_rejects(options: tuple[tuple[str, Any], ...]) -> str | None:
  """XLA's complaint about compiler `options` (an XLA that no longer knows one says so
  here, not in the first step), or None."""
  try:
    jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(np.float32(0)).compile()
  except Exception as e:  # noqa: BLE001 - XLA reports an unknown option as a runtime error
    return str(e).splitlines()[0]
  return None


def check_batch_size(batch_size: int, num_devices: int, what: str = "batch_size") -> None:
  if batch_size % num_devices:
    lower = batch_size - batch_size % num_devices
    options = [b for b in (lower, lower + num_devices) if b > 0]
    raise ConfigError(
        f"The global {what}={batch_size} does not divide by the {num_devices} devices; "
        f"use a multiple of {num_devices}, e.g. {' or '.join(map(str, options))} "
        f"(--config.{what}={options[-1]})."
    )


@dataclasses.dataclass
class Parallel:
  """How state and data are placed and how the train step is compiled."""

  mode: str
  mesh: Mesh
  # `(state, images, labels, perm)`: one step on batch `state.step % steps_per_epoch`.
  train_step: Callable[..., tuple[steps.TrainState, dict[str, jax.Array]]]
  eval_step: Callable[..., dict[str, jax.Array]]
  # `(state, images, labels, perm, None, num_steps)`: several steps per dispatch.
  train_steps: Callable[..., tuple[steps.TrainState, dict[str, jax.Array]]] | None = None
  # `(state, x, y)`: one step on a global batch sharded along `data` (streaming; jit only).
  train_batch: Callable[..., tuple[steps.TrainState, dict[str, jax.Array]]] | None = None

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  def put_state(self, state: steps.TrainState) -> steps.TrainState:
    """Places a plain (host or single-device) state for training."""
    if self.mode == "pmap":
      return self._replicate_for_pmap(state)
    return _put_global(state, NamedSharding(self.mesh, P()))

  def plain_state(self, state: steps.TrainState) -> steps.TrainState:
    """The state without a device axis: what checkpoints and evaluation see."""
    if self.mode == "pmap":
      return _map_keys_too(_first_replica, state)
    return state

  def eval_state(self, state: steps.TrainState) -> steps.TrainState:
    """The state as the (sharded-jit) eval step takes it."""
    if self.mode == "pmap":
      return _put_global(self.plain_state(state), NamedSharding(self.mesh, P()))
    return state

  def put_data(self, array: np.ndarray) -> jax.Array:
    """A whole (small) split, on every device."""
    if self.mode == "pmap":
      return self._replicate_for_pmap(array)
    return _put_global(array, NamedSharding(self.mesh, P()))

  def _replicate_for_pmap(self, tree: Any) -> Any:
    """One copy per device along a new leading axis, laid out as pmap expects."""
    n = self.num_devices
    sharding = NamedSharding(self.mesh, P(DATA_AXIS))
    stack = lambda x: np.broadcast_to(np.asarray(x)[None], (n, *np.shape(x)))  # noqa: E731
    return _map_keys_too(lambda x: _put_global(stack(x), sharding), tree)

  def put_eval_data(self, array: np.ndarray) -> jax.Array:
    return _put_global(array, NamedSharding(self.mesh, P()))

  def metrics(self, m: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """A call's metrics as the loop holds them until it reads them. Under pmap: each value's
    copy on this process's first device, still with its device axis (`[1]`, or `[1, k]`
    from a multi-step call), which `loop.per_step(..., replica_axis=True)` drops on the
    host. Taking `[0]` here ran a program per metric per step: about 0.2 ms of host time a
    step on the 2-core CPU, for three metrics."""
    return jax.tree.map(_first_shard, m) if self.mode == "pmap" else m


def _first_shard(x: jax.Array) -> jax.Array:
  """The copy on this process's first device, with its device axis; no computation."""
  return x.addressable_shards[0].data


def _first_replica(x: jax.Array) -> jax.Array:
  """The copy on this process's first device, without a computation.

  (`x[0]` would launch a program over every device; interleaved with the pmap'd
  step's all-reduce it can deadlock XLA's CPU collectives.)
  """
  return _first_shard(x)[0]


def _map_keys_too(fn: Callable[[Any], jax.Array], tree: Any) -> Any:
  """`jax.tree.map(fn, tree)`, applying `fn` to the raw data of typed PRNG keys."""

  def apply(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(fn(jax.random.key_data(x)))
    return fn(x)

  return jax.tree.map(apply, tree)


def _put_global(tree: Any, sharding: NamedSharding) -> Any:
  """Host values -> global arrays with `sharding` (works across processes)."""

  def put(x):
    if jax.process_count() == 1:
      return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return _map_keys_too(put, tree)


def make_parallel(
    mode: str,
    *,
    batch_size: int,
    eval_batch_size: int,
    num_eval_examples: int,
    preprocess: Callable[[jax.Array], jax.Array],
    aux_loss_weight: float = 0.0,
    augment: Callable[..., jax.Array] | None = None,
    grad_norm: bool = False,
    keep_frozen_stats: Callable[[Any, Any], Any] | None = None,
    label_smoothing: float = 0.0,
    cpu_convolutions: str = "default",
) -> Parallel:
  """Builds the mesh and the compiled train / eval steps for `mode` ('jit' or 'pmap').

  `aux_loss_weight`, `augment`, `grad_norm`, `keep_frozen_stats` and `label_smoothing` go to
  `steps.train_step`; `cpu_convolutions` picks XLA:CPU's kernels (`CPU_CONVOLUTIONS`).
  """
  if mode not in MODES:
    raise ConfigError(f"Unknown parallelism {mode!r}. Known: {', '.join(MODES)}.")
  options = cpu_compiler_options(cpu_convolutions, mode)
  devices = np.asarray(jax.devices())
  mesh = Mesh(devices, (DATA_AXIS,))
  check_batch_size(batch_size, len(devices))
  check_batch_size(eval_batch_size, len(devices), "eval_batch_size")
  replicated = NamedSharding(mesh, P())
  batch = NamedSharding(mesh, P(DATA_AXIS))
  eval_fn = jax.jit(
      functools.partial(
          steps.eval_step, batch_size=eval_batch_size, num_examples=num_eval_examples,
          preprocess=preprocess, batch_sharding=batch,
      ),
      out_shardings=replicated, compiler_options=options,
  )
  common = dict(batch_size=batch_size, preprocess=preprocess, aux_loss_weight=aux_loss_weight,
                augment=augment, grad_norm=grad_norm, keep_frozen_stats=keep_frozen_stats,
                label_smoothing=label_smoothing)
  # K steps a call give the step-by-step bits on the CPU only if each step's state
  # reaches the next through memory (steps.train_steps); elsewhere bits are not the point.
  isolate_steps = devices.flat[0].platform == "cpu"
  if mode == "pmap":
    common["axis_name"] = DATA_AXIS
    train_fn = jax.pmap(
        functools.partial(steps.train_step, **common),
        axis_name=DATA_AXIS, in_axes=(0, 0, 0, None), donate_argnums=(0,),
    )
    train_many = jax.pmap(
        functools.partial(steps.train_steps, isolate_steps=isolate_steps, **common),
        axis_name=DATA_AXIS, in_axes=(0, 0, 0, None, None), static_broadcasted_argnums=(5,),
        donate_argnums=(0,),
    )
  else:
    common["batch_sharding"] = batch
    train_fn = jax.jit(
        functools.partial(steps.train_step, **common),
        in_shardings=(replicated,) * 4, out_shardings=(replicated, replicated),
        donate_argnums=(0,), compiler_options=options,
    )
    train_many = jax.jit(
        functools.partial(steps.train_steps, isolate_steps=isolate_steps, **common),
        static_argnums=(5,), in_shardings=(replicated,) * 5, out_shardings=(replicated, replicated),
        donate_argnums=(0,), compiler_options=options,
    )
  on_batch = None
  if mode == "jit":
    on_batch = jax.jit(
        functools.partial(steps.train_step_on_batch,
                          **{k: v for k, v in common.items() if k != "batch_size"}),
        in_shardings=(replicated, batch, batch), out_shardings=(replicated, replicated),
        donate_argnums=(0,), compiler_options=options,
    )
  return Parallel(mode, mesh, train_fn, eval_fn, train_many, on_batch)
