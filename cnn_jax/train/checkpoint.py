"""Orbax checkpoints in `WORKDIR/checkpoints`: save, find the latest valid one, restore.

A checkpoint holds the train state as plain arrays (step, params, batch_stats,
optimiser state, dropout key data) plus a small JSON record: the data-order
position (epoch, index in epoch), the seed, and the per-step metrics logged
since the last metrics line, so a resumed run writes the same metrics file as
an uninterrupted one. The data order and dropout keys are functions of
(seed, step), so restoring the step restores the RNG state.

Orbax writes each checkpoint into a temporary folder and renames it when
complete, so a kill during a save leaves the previous checkpoints intact; the
unfinished save is deleted when the run restarts, which says so. A checkpoint
that cannot be read (truncated or missing files) is moved to
`WORKDIR/checkpoints_corrupt/` - never deleted - and the previous one is used;
the console shows one line about it, the details go to the debug log.
"""

from __future__ import annotations

import gc
import logging as std_logging
import re
import shutil
import sys
import time
import traceback
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from cnn_jax.errors import ConfigError
from cnn_jax.run import Run
from cnn_jax.train.steps import TrainState


def state_to_tree(state: TrainState) -> dict[str, Any]:
  """The arrays of a train state, with the typed PRNG key stored as raw key data."""
  return {
      "step": jnp.asarray(state.step, jnp.int32),
      "params": state.params,
      "batch_stats": state.batch_stats,
      "opt_state": state.opt_state,
      "dropout_key": jax.random.key_data(state.dropout_key),
  }


def tree_to_state(template: TrainState, tree: dict[str, Any]) -> TrainState:
  return template.replace(
      step=tree["step"],
      params=tree["params"],
      batch_stats=tree["batch_stats"],
      opt_state=tree["opt_state"],
      dropout_key=jax.random.wrap_key_data(tree["dropout_key"]),
  )


def _shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
      jax.tree_util.keystr(path): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
      for path, leaf in flat
  }


# Orbax saves step N into `N.orbax-checkpoint-tmp[-<timestamp>]` and renames it when complete
# (orbax/checkpoint/_src/path/atomicity.py); `cleanup_tmp_directories` deletes leftovers.
UNFINISHED_SAVE = re.compile(r"(\d+)\.orbax-checkpoint-tmp")


def _reason(error: BaseException) -> str:
  """The innermost cause's first line, without TensorStore's multi-line spec."""
  while error.__cause__ is not None:
    error = error.__cause__
  text = str(error).split(" See full TensorStore details")[0].strip()
  return (text.splitlines()[0][:300] if text else "") or type(error).__name__


def _after_failed_read(text: str) -> bool:
  return "/orbax/" in text or "Event loop is closed" in text


def _mute_failed_read_leftovers() -> None:
  """Sends what a failed orbax read leaves behind to the debug log instead of the console.

  When one array of a checkpoint cannot be read, orbax closes its event loop with the other
  reads still pending. When Python collects them (at any time, often at exit) each prints its
  exception with the full TensorStore spec - hundreds of lines - through `sys.unraisablehook`
  ("Exception ignored in: <coroutine ...>", "RuntimeError: Event loop is closed") or the
  `asyncio` logger ("Task exception was never retrieved"). Other messages pass unchanged.
  """
  if getattr(_mute_failed_read_leftovers, "done", False):
    return
  _mute_failed_read_leftovers.done = True
  previous_hook = sys.unraisablehook

  def unraisable_hook(u):
    text = "".join(traceback.format_exception(u.exc_type, u.exc_value, u.exc_traceback))
    if not _after_failed_read(f"{u.object!r} {text}"):
      previous_hook(u)
      return
    try:
      logging.debug("Left over from a failed checkpoint read (%r): %s", u.object, text)
    except Exception:  # noqa: BLE001,S110 - at interpreter exit logging may be gone already
      pass

  def asyncio_filter(record: std_logging.LogRecord) -> bool:
    text = record.getMessage()
    if record.exc_info:
      text += "".join(traceback.format_exception(*record.exc_info))
    if not _after_failed_read(text):
      return True
    logging.debug("Left over from a failed checkpoint read: %s", text)
    return False

  sys.unraisablehook = unraisable_hook
  std_logging.getLogger("asyncio").addFilter(asyncio_filter)


class Checkpointer:
  """Saves every `every_steps` steps (and on demand), keeps the last `keep`."""

  def __init__(self, run: Run, *, every_steps: int, keep: int):
    self.directory = run.checkpoint_dir
    self.corrupt_dir = run.corrupt_dir
    self.every_steps = every_steps
    # Saves a killed run left unfinished; the manager deletes them as it starts.
    self.unfinished = self._unfinished_saves()
    self._run, self._keep, self._started = run, keep, None
    # Orbax (about 0.15 s of imports) is loaded when there is something to restore or clean
    # up, else at the first save: a new run reaches its first step without it.
    if self.directory.is_dir() and any(self.directory.iterdir()):
      self._start()  # now: the manager cleans up unfinished saves as it starts

  def _start(self):
    """Orbax's manager, started on first use."""
    if self._started is None:
      self._started = self._run.checkpoint_manager(keep=self._keep, create=True)
    return self._started

  _manager = property(_start)

  def _unfinished_saves(self) -> list[int]:
    if not self.directory.is_dir():
      return []
    found = (UNFINISHED_SAVE.match(p.name) for p in self.directory.iterdir())
    return sorted({int(m.group(1)) for m in found if m})

  def due(self, step: int) -> bool:
    return bool(self.every_steps) and step % self.every_steps == 0

  def steps(self) -> list[int]:
    """The steps of the checkpoints saved so far, oldest first."""
    return sorted(self._manager.all_steps()) if self._started is not None else []

  def save(self, state: TrainState, meta: dict[str, Any]) -> None:
    import orbax.checkpoint as ocp

    step = int(state.step)
    if step in self._manager.all_steps():
      return
    self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state_to_tree(state)), meta=ocp.args.JsonSave(meta)
        ),
        force=True,
    )

  def wait(self) -> None:
    if self._started is not None:
      self._started.wait_until_finished()

  def close(self) -> None:
    if self._started is not None:
      self._started.wait_until_finished()
      self._started.close()

  def restore_latest(self, template: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
    """Restores the newest readable checkpoint, or returns None when there is none.

    Raises ConfigError when a checkpoint's arrays do not fit the config's model.
    """
    if self._started is None:  # the folder was empty or missing when the run started
      return None
    import orbax.checkpoint as ocp

    # The model's arrays decide whether a checkpoint fits; the optimiser state follows them.
    model_arrays = lambda tree: {"params": tree["params"], "batch_stats": tree["batch_stats"]}  # noqa: E731
    expected = _shapes(model_arrays(state_to_tree(template)))
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        stored = _shapes(model_arrays(self._manager.item_metadata(step)["state"]))
      except Exception as e:  # noqa: BLE001 - any unreadable metadata means a broken checkpoint
        self._quarantine(step, e)
        continue
      if stored != expected:
        first = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))[0]
        describe = lambda v: f"{v[0]} {v[1]}" if v else "missing"  # noqa: E731
        raise ConfigError(
            f"Checkpoint {self.directory / str(step)} does not fit this config: {first} is "
            f"{describe(stored.get(first))} in the checkpoint but "
            f"{describe(expected.get(first))} for the configured model. It belongs to a "
            "different model; use a new --workdir."
        )
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_to_tree(template))
      try:
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
      except Exception as e:  # noqa: BLE001 - truncated or missing array files
        self._quarantine(step, e)
        continue
      self._report_unfinished(step)
      logging.info("Resuming from checkpoint %s.", self.directory / str(step))
      return tree_to_state(template, restored["state"]), dict(restored["meta"])
    self._report_unfinished(None)
    return None

  def _report_unfinished(self, resumed_step: int | None) -> None:
    if not self.unfinished:
      return
    saves = ", ".join(str(s) for s in self.unfinished)
    logging.warning(
        "Found an unfinished checkpoint save (step %s) in %s: the previous run stopped while "
        "saving it. Discarded it; %s.", saves, self.directory,
        f"resuming from step {resumed_step}, the latest complete checkpoint" if resumed_step
        is not None else "no complete checkpoint is left, so the run starts from step 0",
    )

  def _quarantine(self, step: int, error: Exception) -> None:
    _mute_failed_read_leftovers()
    self.corrupt_dir.mkdir(parents=True, exist_ok=True)
    target = self.corrupt_dir / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
    logging.warning(
        "Checkpoint %s is unreadable (%s); moved it to %s and falling back to the previous one.",
        self.directory / str(step), _reason(error), target,
    )
    logging.debug("Reading checkpoint %s failed:\n%s", self.directory / str(step),
                  "".join(traceback.format_exception(error)))
    shutil.move(str(self.directory / str(step)), str(target))
    self._manager.reload()
    gc.collect()  # the failed read's leftovers are reported now, to the debug log
