"""Orbax checkpoints in `WORKDIR/checkpoints`: save, find the latest valid one, restore.

A checkpoint holds the train state as plain arrays (step, params, batch_stats,
optimiser state, dropout key data) plus a small JSON record: the data-order
position (epoch, index in epoch), the seed, and the per-step metrics logged
since the last metrics line, so a resumed run writes the same metrics file as
an uninterrupted one. The data order and dropout keys are functions of
(seed, step), so restoring the step restores the RNG state.

Orbax writes each checkpoint into a temporary folder and renames it when
complete, so a kill during a save leaves the previous checkpoints intact. A
checkpoint that cannot be read (truncated or missing files) is moved to
`WORKDIR/checkpoints_corrupt/` - never deleted - and the previous one is used.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
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


class Checkpointer:
  """Saves every `every_steps` steps (and on demand), keeps the last `keep`."""

  def __init__(self, run: Run, *, every_steps: int, keep: int):
    self.directory = run.checkpoint_dir
    self.corrupt_dir = run.corrupt_dir
    self.every_steps = every_steps
    self._manager = run.checkpoint_manager(keep=keep, create=True)

  def due(self, step: int) -> bool:
    return bool(self.every_steps) and step % self.every_steps == 0

  def steps(self) -> list[int]:
    """The steps of the checkpoints saved so far, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, state: TrainState, meta: dict[str, Any]) -> None:
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
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def restore_latest(self, template: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
    """Restores the newest readable checkpoint, or returns None when there is none.

    Raises ConfigError when a checkpoint's arrays do not fit the config's model.
    """
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
      logging.info("Resuming from checkpoint %s.", self.directory / str(step))
      return tree_to_state(template, restored["state"]), dict(restored["meta"])
    return None

  def _quarantine(self, step: int, error: Exception) -> None:
    self.corrupt_dir.mkdir(parents=True, exist_ok=True)
    target = self.corrupt_dir / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
    message = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    logging.warning(
        "Checkpoint %s is unreadable (%s); moved it to %s and falling back to the previous one.",
        self.directory / str(step), message, target,
    )
    shutil.move(str(self.directory / str(step)), str(target))
    self._manager.reload()
