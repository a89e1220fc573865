"""`train_and_evaluate(config, workdir)`: the one training loop every experiment uses.

Everything that can fail on bad input (names, data files, shapes) is checked
before the workdir is touched, so a bad command leaves nothing behind.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec

from cnn_jax import data as data_lib
from cnn_jax import startup
from cnn_jax.data import augment as augment_lib
from cnn_jax.data import stream
from cnn_jax.errors import ConfigError, UserError
from cnn_jax.models import model_from_config
from cnn_jax.run import Run, TensorBoardWriter
from cnn_jax.train import determinism, steps
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.compilation_cache import use_compilation_cache
from cnn_jax.train.config import default_train_config
from cnn_jax.train.init_from import initialize_from
from cnn_jax.train.optim import check_train_only, create_optimizer, keep_frozen_stats
from cnn_jax.train.parallel import DATA_AXIS, Parallel, initialize_distributed, make_parallel
from cnn_jax.train.preemption import Preempted, PreemptionGuard


@dataclasses.dataclass
class Setup:
  """Everything built from a config before training starts."""

  config: ml_collections.ConfigDict
  train: data_lib.Split | stream.StreamingSplit  # by config.data.source
  test: data_lib.Split
  model: Any
  state: steps.TrainState
  schedule: Any
  normalize: data_lib.Normalization
  steps_per_epoch: int
  total_steps: int
  data_key: jax.Array
  parallel: Parallel
  eval_batch_size: int


def num_params(params: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def setup(config: ml_collections.ConfigDict) -> Setup:
  """Builds data, model and optimiser from `config`; raises `UserError`s on bad input."""
  dc = config.data
  where = {"data_dir": dc.data_dir, "tfds_dir": dc.tfds_dir, "download": dc.download}
  load = functools.partial(data_lib.load_split, dc.name, max_bytes=stream.device_resident_limit(),
                           **where)
  if dc.source not in stream.SOURCES:
    raise ConfigError(
        f"Unknown data.source {dc.source!r}; choose one of {', '.join(stream.SOURCES)}."
    )
  if dc.source == "stream":
    _check_streaming(config)
    train = stream.open_split(dc.name, dc.train_split, **where)
    normalize = stream.streamed_normalization(train, dc.image_size or None)
    image_shape = train.image_shape
    test = load(dc.test_split, too_big=(
        "Evaluation reads the test split whole even when training streams; evaluate on a "
        "smaller split (--config.data.test_split=..., e.g. 'test[:10000]')."))
    startup.mark("data_loaded")
    startup.mark("normalization")
  else:
    train, test = load(dc.train_split), load(dc.test_split)
    startup.mark("data_loaded")
    # Pixel statistics from every training image; the labelled subset (if any) after.
    normalize = data_lib.Normalization.from_split(train, dc.image_size or None)
    startup.mark("normalization")
    image_shape = train.images.shape[1:]
  labelled = data_lib.labelled_indices(len(train), dc.num_train, config.seed)
  train = train.subset(labelled) if dc.source == "stream" else data_lib.subset(train, labelled)
  # Under pmap, BatchNorm averages its statistics over all devices.
  model = model_from_config(
      config, axis_name=DATA_AXIS if config.get("parallelism") == "pmap" else None
  )
  if config.model.num_classes != train.num_classes:
    raise ConfigError(
        f"config.model.num_classes={config.model.num_classes} but data set {dc.name!r} has "
        f"{train.num_classes} classes; set --config.model.num_classes={train.num_classes}."
    )
  if config.batch_size > len(train) or config.batch_size < 1:
    raise ConfigError(
        f"batch_size={config.batch_size} must be between 1 and the {len(train)} training examples."
    )
  steps_per_epoch = len(train) // config.batch_size
  total_steps = steps_per_epoch * config.num_epochs
  tx, schedule = create_optimizer(
      config.optimizer, total_steps, steps_per_epoch, train_only=config.train_only
  )
  init_key, data_key = steps.root_keys(config.seed)
  size = dc.image_size or image_shape[0]
  state = steps.create_train_state(model, tx, init_key, (size, size, image_shape[2]))
  startup.mark("model_init")
  if not config.aux_loss_weight >= 0:
    raise ConfigError(f"aux_loss_weight must be >= 0, got {config.aux_loss_weight}.")
  if config.aux_loss_weight:
    steps.check_auxiliary_heads(state, (size, size, image_shape[2]))
  if not 0 <= config.label_smoothing < 1:
    raise ConfigError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}.")
  if config.steps_per_call < 1:
    raise ConfigError(f"steps_per_call must be at least 1, got {config.steps_per_call}.")
  if config.eval_every_epochs < 1:
    raise ConfigError(f"eval_every_epochs must be at least 1, got {config.eval_every_epochs}.")
  if config.init_from:
    state = initialize_from(state, config.init_from, config.model.name)
  if config.train_only:
    _log_trained(state.params, config.train_only)
  n_dev = jax.device_count()
  eval_bs = max(n_dev, min(config.eval_batch_size, len(test)) // n_dev * n_dev)
  parallel = make_parallel(
      config.parallelism,
      batch_size=config.batch_size,
      eval_batch_size=eval_bs,
      num_eval_examples=len(test),
      preprocess=functools.partial(normalize, dtype=jnp.dtype(config.dtype)),
      aux_loss_weight=float(config.aux_loss_weight),
      augment=augment_lib.build(dc.augment),
      grad_norm=bool(config.tensorboard),
      keep_frozen_stats=keep_frozen_stats(config.train_only) if config.train_only else None,
      label_smoothing=float(config.label_smoothing),
      cpu_convolutions=config.get("cpu_convolutions", "default"),
  )
  startup.mark("setup_done")
  return Setup(
      config, train, test, model, state, schedule, normalize, steps_per_epoch, total_steps,
      data_key, parallel, eval_bs,
  )


def _check_streaming(config: ml_collections.ConfigDict) -> None:
  """The streaming source feeds sharded jit one batch per step (no pmap, no K-step calls)."""
  if config.parallelism != "jit":
    raise ConfigError(
        f"data.source='stream' runs with parallelism='jit' (sharded jit), not "
        f"{config.parallelism!r}; set --config.parallelism=jit."
    )
  if config.steps_per_call != 1:
    raise ConfigError(
        f"data.source='stream' runs one step per call (steps_per_call={config.steps_per_call}): "
        "the input, not the dispatch, bounds a streamed step. Set --config.steps_per_call=1, "
        "or use --config.data.source=device for a data set that fits in memory."
    )


def _log_trained(params: Any, train_only: tuple[str, ...]) -> None:
  """Logs which arrays train under `train_only` (a ConfigError if a name matches none)."""
  trained, frozen = check_train_only(params, train_only)
  sizes = {
      "/".join(str(k.key) for k in path): int(np.size(x))
      for path, x in jax.tree_util.tree_leaves_with_path(params)
  }
  # Frozen arrays by top-level module where the whole module is frozen.
  partly = {n.split("/")[0] for n in trained}
  frozen_names = sorted(
      {n.split("/")[0] for n in frozen if n.split("/")[0] not in partly}
      | {n for n in frozen if n.split("/")[0] in partly}
  )
  logging.info(
      "train_only=%s: %d of %d arrays train (%s of %s parameters): %s; frozen: %s.",
      train_only, len(trained), len(sizes), f"{sum(sizes[n] for n in trained):,}",
      f"{sum(sizes.values()):,}", ", ".join(trained), ", ".join(frozen_names) or "none",
  )


# Fields that say where and how a run executes, not what it computes (two change the last
# bits: `deterministic` on a GPU, `cpu_convolutions` on the CPU): a run may resume on another
# device count, with pmap instead of sharded jit, as another process, or with other kernels.
PLACEMENT_FIELDS = (
    "parallelism", "distributed", "steps_per_call", "deterministic", "compilation_cache",
    "data.stream_threads", "cpu_convolutions",
)
# Fields that say what a run reports besides metrics.jsonl; a resumed run may change them.
REPORTING_FIELDS = ("tensorboard",)
# Fields that say how often a run saves and how many saves it keeps: a resumed run may
# change them (e.g. a long run started with a save at the end only, made safe to interrupt).
# The loop's calls end at saves; any call length gives the same bits (steps_per_call), so
# any save interval does.
SAVING_FIELDS = ("checkpoint_every_steps", "keep_checkpoints")


def evaluate(state, eval_fn, images: jax.Array, labels: jax.Array, n: int, batch_size: int):
  """Mean loss and accuracy over the `n` real examples of a padded, on-device split."""
  loss_sum, correct = 0.0, 0
  for start in range(0, n, batch_size):
    out = eval_fn(state, images, labels, np.int32(start))
    loss_sum += out["loss_sum"]
    correct += out["correct"]
  return float(loss_sum) / n, float(correct) / n


def _pad_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
  pad = (-len(x)) % multiple
  return np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x


def _fmt_time(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def steps_this_call(
    step: int, total: int, steps_per_epoch: int, config: ml_collections.ConfigDict,
    checkpoint_every: int,
) -> int:
  """How many steps the next dispatch runs: up to `config.steps_per_call`, ending at the
  next step where the loop logs, evaluates, checkpoints or finishes (so every record and
  checkpoint is the one a step-by-step run writes)."""
  k = min(config.steps_per_call, total - step)
  for every in (steps_per_epoch, config.log_every_steps, checkpoint_every):
    if every:
      k = min(k, every - step % every)
  return max(k, 1)


# How many dispatched train calls the loop lets run ahead of the device. JAX dispatches
# asynchronously, and a loop that logs once an epoch could otherwise queue up to the rest
# of the epoch: a preemption signal then waits for all of it before its checkpoint (the
# speed run on the 2-core CPU, about 4 s a step, was 29 steps ahead and took 187 s to stop;
# 22 s with this bound). Three calls keep an accelerator's queue full.
MAX_CALLS_IN_FLIGHT = 3


class InFlight:
  """A window of dispatched calls: once more than `limit` are in flight, waits for the
  oldest to finish (its outputs, e.g. the metrics, are ready when its step has run)."""

  def __init__(self, limit: int):
    self.limit, self.calls = limit, collections.deque()

  def dispatched(self, outputs: Any) -> None:
    self.calls.append(outputs)
    while len(self.calls) > self.limit:
      jax.block_until_ready(self.calls.popleft())


# The loop reads its metrics once a log interval: hundreds of device scalars (with the
# default TensorBoard metrics, three a step). Each read is a round trip of its own, costly
# beside a small model's step on an accelerator, so the scalars are stacked on the device
# first, `FETCH_CHUNK` to a call of one compiled program, and come over in a few reads.
FETCH_CHUNK = 64


@jax.jit
def _stack(*scalars: jax.Array) -> jax.Array:
  return jnp.stack(scalars)


def device_get_stacked(tree: Any) -> Any:
  """`jax.device_get(tree)`, reading its device scalars (arrays of one element) in stacks of
  `FETCH_CHUNK`.

  Values are unchanged (a stack copies its inputs); other leaves (arrays with a shape, host
  values) are read as `jax.device_get` reads them, as are all leaves across processes.
  """
  leaves, treedef = jax.tree.flatten(tree)
  groups = collections.defaultdict(list)  # (dtype, sharding, shape) -> positions of scalars
  if jax.process_count() == 1:
    for i, x in enumerate(leaves):
      if isinstance(x, jax.Array) and x.size == 1:  # `()`, or `(1,)` from pmap's device axis
        groups[x.dtype, x.sharding, x.shape].append(i)
  stacks = []
  for positions in groups.values():
    for start in range(0, len(positions), FETCH_CHUNK):
      chunk = positions[start:start + FETCH_CHUNK]
      padded = chunk + chunk[-1:] * (FETCH_CHUNK - len(chunk))  # one program for every chunk
      stacks.append((chunk, _stack(*(leaves[i] for i in padded))))
  stacked = {i for chunk, _ in stacks for i in chunk}
  rest = [None if i in stacked else x for i, x in enumerate(leaves)]
  host_rest, host_stacks = jax.device_get((rest, [s for _, s in stacks]))
  for (chunk, _), values in zip(stacks, host_stacks):
    for i, value in zip(chunk, values):
      host_rest[i] = value
  return jax.tree.unflatten(treedef, host_rest)


def per_step(pending: list[dict[str, Any]], replica_axis: bool = False) -> list[dict[str, Any]]:
  """Metrics of single steps and of multi-step calls (stacked `[k]`) as one dict per step.

  Reads the device values, so the loop does it only when it logs or checkpoints, in a few
  transfers (`device_get_stacked`). `replica_axis`: the device values keep pmap's device
  axis (`Parallel.metrics`), dropped here; host values (floats restored from a checkpoint,
  or steps already read) have none.
  """
  out = []
  for m in device_get_stacked(pending):  # device arrays, or floats restored from a checkpoint
    values = {key: np.asarray(v) for key, v in m.items()}
    if replica_axis:
      values = {key: v[0] if v.ndim else v for key, v in values.items()}
    if next(iter(values.values())).ndim == 0:
      out.append(values)
    else:
      out.extend({key: v[i] for key, v in values.items()} for i in range(len(values["loss"])))
  return out


def _mean_of_calls(values: list[jax.Array]) -> float:
  """The mean over steps of per-call values (scalars, or `[k]` from multi-step calls)."""
  return float(np.mean(np.concatenate([np.ravel(v) for v in device_get_stacked(values)])))


class Diverged(UserError, FloatingPointError):
  """The loss or the parameters became nan or inf."""


def check_finite(pending: list[dict[str, Any]], done: int, run: Run, ckpt: Checkpointer) -> None:
  """Raises `Diverged` naming the first step whose loss is not finite, if any."""
  first_step = done - len(pending) + 1
  for i, m in enumerate(pending):
    if not math.isfinite(float(m["loss"])):
      raise _diverged(first_step + i, run, ckpt)


def _diverged(step: int, run: Run, ckpt: Checkpointer) -> Diverged:
  saved = ckpt.steps()
  kept = (
      f"The last good checkpoint, step {saved[-1]} in {run.checkpoint_dir}, is kept"
      if saved else "No checkpoint was saved before it"
  )
  return Diverged(
      f"Training loss is nan or inf at step {step}: the run diverged. {kept}. Lower "
      "--config.optimizer.learning_rate or set --config.optimizer.grad_clip_norm, in a new "
      "--workdir."
  )


@jax.jit
def all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


# A logged training loss this many times that of a uniform guess (ln K for K classes,
# about where every initialisation starts) is reported as divergence.
LOSS_GROWTH_WARNING = 100.0


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config.model` on `config.data` and evaluates it after every epoch.

  Writes the run directory (`cnn_jax.run.Run`): config.json, metrics.jsonl,
  checkpoints and, at the end, summary.json; returns the summary. A workdir
  with checkpoints of the same config resumes from the latest valid one and
  ends with the same parameters and metrics as an uninterrupted run. With
  `config.tensorboard` it also writes TensorBoard event files (`_TensorBoard`).
  """
  startup.mark("flags_parsed")
  determinism.apply(config.get("deterministic", True))  # before anything starts a backend
  startup.listen_to_compiles()
  use_compilation_cache(config.compilation_cache)
  initialize_distributed(config)
  startup.backend_started()
  run = Run(workdir)
  # Refuse another config's workdir before anything slow (data, model) happens.
  run.check_config(
      config, defaults=default_train_config(),
      ignore=PLACEMENT_FIELDS + REPORTING_FIELDS + SAVING_FIELDS,
  )
  s = setup(config)
  if jax.process_index() == 0:
    run.write_config(config)
  ckpt = Checkpointer(run, every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints)
  startup.mark("checkpointer")
  try:
    return _train(s, run, ckpt)
  finally:
    ckpt.close()


def _tensorboard(run: Run, config: ml_collections.ConfigDict, start_step: int) -> TensorBoardWriter:
  """This part of the run's event file in `WORKDIR/tensorboard/` (process 0 only).

  At the steps metrics.jsonl gives them: scalars `train/loss`, `train/accuracy`,
  `train/learning_rate`, `train/aux_loss` (if any), `train/grad_norm` (the global norm of
  the gradient, mean over the steps since the last log line; after a resume, over those
  since the resume) and `train/images_per_s` (wall clock since the last log line, so the
  first includes compilation); `test/loss`, `test/accuracy`; and a histogram of every
  parameter, `params/<module>/.../<array>`, at step 0 and after every epoch. A resumed run
  starts its file with `purge_step`: TensorBoard drops the earlier files' events after the
  checkpoint it resumed from (written again by this part), so each step shows once.
  """
  return run.tensorboard_writer(
      enabled=jax.process_index() == 0 and bool(config.tensorboard),
      purge_step=start_step + 1 if start_step else 0,
  )


def _host_params(par: Parallel, state: steps.TrainState) -> Any:
  return jax.tree.map(np.asarray, par.plain_state(state).params)


def _train(s: Setup, run: Run, ckpt: Checkpointer) -> dict[str, Any]:
  config = s.config
  is_writer = jax.process_index() == 0
  state, pending, start_step, time_before = s.state, [], 0, 0.0
  restored = ckpt.restore_latest(s.state)
  if restored is not None:
    state, meta = restored
    start_step, pending = int(state.step), list(meta["pending_metrics"])
    time_before = float(meta.get("train_time_s", 0.0))
  history = run.truncate_metrics(start_step, rewrite=is_writer)
  startup.mark("restore")
  if start_step >= s.total_steps and run.has_summary():
    logging.info("%s already holds the finished run.", run.path)
    return run.read_summary()

  par = s.parallel
  pmap = par.mode == "pmap"  # metrics keep a device axis until read (`per_step`)
  state = par.put_state(state)
  streaming = config.data.source == "stream"
  if streaming:  # read from the files, starting at the checkpoint's step
    batches = stream.device_batches(
        s.train, s.data_key, NamedSharding(par.mesh, PartitionSpec(DATA_AXIS)),
        batch_size=config.batch_size, steps_per_epoch=s.steps_per_epoch, start_step=start_step,
        stop_step=s.total_steps, num_threads=config.data.stream_threads,
    )
  else:
    train_images, train_labels = par.put_data(s.train.images), par.put_data(s.train.labels)
  test_images = par.put_eval_data(_pad_to_multiple(s.test.images, s.eval_batch_size))
  test_labels = par.put_eval_data(_pad_to_multiple(s.test.labels, s.eval_batch_size))
  startup.mark("device_put")
  permutation = jax.jit(
      data_lib.epoch_permutation, static_argnums=2,
      out_shardings=NamedSharding(par.mesh, PartitionSpec()),
      compiler_options=steps.one_off_compiler_options(),
  )

  n_params = num_params(s.state.params)
  logging.info(
      "Training %s (%s parameters) on %s: %d train / %d test images, %d epochs x %d steps "
      "of %d%s.", config.model.name, f"{n_params:,}", config.data.name, len(s.train),
      len(s.test), config.num_epochs, s.steps_per_epoch, config.batch_size,
      f", resuming at step {start_step}" if start_step else "",
  )
  start_time = last_time = time.perf_counter()

  def checkpoint_meta(done: int) -> dict[str, Any]:
    epoch, index = divmod(done, s.steps_per_epoch)
    return {
        # The data order's position: the whole state of either source's reader.
        "step": done, "epoch": epoch, "index_in_epoch": index, "seed": config.seed,
        "data_source": config.data.source,
        "pending_metrics": [{k: float(v) for k, v in m.items()} for m in per_step(pending, pmap)],
        # Wall time of the steps so far, over every part of an interrupted run.
        "train_time_s": time_before + time.perf_counter() - start_time,
    }

  in_flight = InFlight(MAX_CALLS_IN_FLIGHT)
  uniform_loss = math.log(s.train.num_classes)
  growth_warned = False
  last_step = start_step
  grad_norms = []  # TensorBoard only: not in metrics.jsonl, nor in the checkpoints
  with (
      PreemptionGuard() as guard,
      run.metric_writer(enabled=is_writer) as writer,
      _tensorboard(run, config, start_step) as tb,
  ):
    if tb.enabled and start_step == 0:
      tb.histograms(0, "params", _host_params(par, state))
    startup.mark("tensorboard")
    step = start_step
    while step < s.total_steps:
      epoch, index = divmod(step, s.steps_per_epoch)
      if not streaming and (index == 0 or step == start_step):
        perm = permutation(s.data_key, epoch, len(s.train))
      k = steps_this_call(step, s.total_steps, s.steps_per_epoch, config, ckpt.every_steps)
      if streaming:
        state, m = par.train_batch(state, *next(batches))
      elif k == 1:  # batch `index` of the epoch, from state.step: nothing sent from the host
        state, m = par.train_step(state, train_images, train_labels, perm)
      else:  # k steps in one dispatch; calls end at every log, epoch and checkpoint step
        state, m = par.train_steps(state, train_images, train_labels, perm, None, k)
      if step == start_step:
        startup.first_step_done(state)
      m = par.metrics(m)
      in_flight.dispatched(m)
      if "grad_norm" in m:
        grad_norms.append(m.pop("grad_norm"))
      pending.append(m)
      step = done = step + k
      end_of_epoch = done % s.steps_per_epoch == 0
      if done % config.log_every_steps == 0 or end_of_epoch:
        pending = per_step(pending, pmap)
        check_finite(pending, done, run, ckpt)
        means = {k: float(np.mean([float(p[k]) for p in pending])) for k in pending[0]}
        pending = []
        record = {
            "step": done, "epoch": epoch + 1, "split": "train",
            "loss": means["loss"], "accuracy": means["accuracy"],
            "learning_rate": float(s.schedule(done - 1)),
            **({"aux_loss": means["aux_loss"]} if "aux_loss" in means else {}),
        }
        writer.write(record)
        history.append(record)
        if not growth_warned and record["loss"] > LOSS_GROWTH_WARNING * uniform_loss:
          growth_warned = True
          logging.warning(
              "The training loss is %.4g at step %d, over %d times that of a uniform guess "
              "(ln %d = %.2f): the run is diverging. Lower --config.optimizer.learning_rate "
              "(now %g).", record["loss"], done, LOSS_GROWTH_WARNING, s.train.num_classes,
              uniform_loss, config.optimizer.learning_rate,
          )
        now = time.perf_counter()
        rate = (done - last_step) / max(now - last_time, 1e-9)
        last_time, last_step = now, done
        logging.info(
            "step %d/%d  epoch %d  loss %.4f  acc %.4f  %.1f steps/s  %.0f img/s  ETA %s",
            done, s.total_steps, epoch + 1, means["loss"], means["accuracy"], rate,
            rate * config.batch_size, _fmt_time((s.total_steps - done) / rate),
        )
        tb.scalars(done, {
            **{f"train/{k}": v for k, v in record.items() if k not in ("step", "epoch", "split")},
            **({"train/grad_norm": _mean_of_calls(grad_norms)} if grad_norms else {}),
            "train/images_per_s": rate * config.batch_size,
        })
        grad_norms = []
      if end_of_epoch and ((epoch + 1) % config.eval_every_epochs == 0 or done == s.total_steps):
        loss, acc = evaluate(
            par.eval_state(state), par.eval_step, test_images, test_labels, len(s.test),
            s.eval_batch_size,
        )
        record = {"step": done, "epoch": epoch + 1, "split": "test", "loss": loss, "accuracy": acc}
        writer.write(record)
        history.append(record)
        logging.info("epoch %d  test loss %.4f  test accuracy %.4f", epoch + 1, loss, acc)
        tb.scalars(done, {"test/loss": loss, "test/accuracy": acc})
      if end_of_epoch and tb.enabled:
        tb.histograms(done, "params", _host_params(par, state))
      if ckpt.due(done) or done == s.total_steps or guard.requested:
        pending = per_step(pending, pmap)
        check_finite(pending, done, run, ckpt)
        tb.flush()  # what a checkpoint covers is on disk before it (a resume purges the rest)
        plain = par.plain_state(state)
        if not bool(all_finite(plain.params)):  # a loss is computed before its update
          raise _diverged(done, run, ckpt)
        ckpt.save(plain, checkpoint_meta(done))
      if guard.requested:
        ckpt.wait()
        raise Preempted(
            f"Stopped by signal {guard.signum} at step {done}; checkpoint saved in "
            f"{ckpt.directory / str(done)}. Rerun the same command to resume.",
            guard.signum,
        )
  ckpt.wait()
  part_time = time.perf_counter() - start_time
  train_time = time_before + part_time
  last_test = [r for r in history if r["split"] == "test"][-1]
  summary = {
      "model": config.model.name,
      "dataset": config.data.name,
      "num_params": n_params,
      "steps": s.total_steps,
      "epochs": config.num_epochs,
      "test_accuracy": last_test["accuracy"],
      "test_loss": last_test["loss"],
      # The whole run: every part of an interrupted run, each up to its last checkpoint.
      "train_time_s": train_time,
      "images_per_s": s.total_steps * config.batch_size / max(train_time, 1e-9),
      # The last part alone (from `resumed_from_step`; the whole run when it was not resumed).
      "resumed_from_step": start_step,
      "part_train_time_s": part_time,
      "part_images_per_s": (s.total_steps - start_step) * config.batch_size / max(part_time, 1e-9),
      "device": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(),
      "parallelism": config.parallelism,
      "xla_deterministic_ops": determinism.flag_value(),
  }
  if is_writer:
    run.write_summary(summary)
  logging.info(
      "Done in %s: test accuracy %.4f (%s).", _fmt_time(part_time), summary["test_accuracy"],
      run.summary_path,
  )
  if growth_warned:
    logging.warning("The training loss diverged during this run (see the warning above).")
  return summary
