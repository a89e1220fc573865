"""Several training steps per dispatch give exactly the step-by-step run (CPU)."""

import jax
import numpy as np

from cnn_jax.run import Run
from cnn_jax.train import loop, train_and_evaluate
from cnn_jax.train.config import load_config


def _run(tmp_path, name, **overrides):
  config = load_config("configs/simple_cnn_digits.py", {
      "num_epochs": 1, "batch_size": 64, "log_every_steps": 7, "checkpoint_every_steps": 10,
      "model.conv_features": (8, 16), "model.dense_features": (32,), **overrides})
  train_and_evaluate(config, str(tmp_path / name))
  run = Run(tmp_path / name)
  return run.metrics_path.read_text(), run.restore_variables()


def test_k_steps_per_call_equal_one_step_per_call_bit_for_bit(tmp_path):
  one_metrics, one_vars = _run(tmp_path, "k1")
  for k in (4, 64):  # 64: every call is cut short by a log, epoch or checkpoint step
    metrics, variables = _run(tmp_path, f"k{k}", steps_per_call=k)
    assert metrics == one_metrics
    jax.tree.map(np.testing.assert_array_equal, variables, one_vars)


def test_calls_end_where_the_loop_logs_evaluates_and_checkpoints():
  config = load_config("configs/simple_cnn_digits.py", {
      "steps_per_call": 16, "log_every_steps": 7, "checkpoint_every_steps": 10})
  spe, total = 22, 44
  step, calls = 0, []
  while step < total:
    k = loop.steps_this_call(step, total, spe, config, 10)
    calls.append(k)
    step += k
  ends = np.cumsum(calls)
  for boundary in (7, 10, 14, 20, 21, 22, 28, 30, 35, 40, 42, 44):
    assert boundary in ends
  assert max(calls) <= 16 and sum(calls) == total
