"""TensorBoard event files beside metrics.jsonl, read back with TensorBoard's own reader."""

import importlib.util
import shutil

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from cnn_jax.run import Run
from cnn_jax.train import train_and_evaluate
from cnn_jax.train.config import load_config

# 640 labelled digits in batches of 64: 10 steps an epoch.
OVERRIDES = {
    "data.num_train": 640, "batch_size": 64, "log_every_steps": 4, "checkpoint_every_steps": 5,
    "model.batch_norm": True, "model.dropout": 0.1, "model.conv_features": (4, 8),
    "model.dense_features": (16,), "optimizer.grad_clip_norm": 1.0,
}
LOGGED = [4, 8, 10, 12, 16, 20]  # every 4 steps and at the end of each epoch


def tiny_config(**overrides):
  return load_config("configs/simple_cnn_digits.py", {**OVERRIDES, "num_epochs": 2, **overrides})


def read_events(path, purge: bool = True) -> event_accumulator.EventAccumulator:
  """Every event under `path` (a directory or one file), none sampled away; `purge=False`
  keeps the events a later file's `purge_step` hides."""
  keep_all = {event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0,
              event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0}
  events = event_accumulator.EventAccumulator(
      str(path), size_guidance=keep_all, purge_orphaned_data=purge
  )
  events.Reload()
  return events


def scalars(events, tag) -> list[tuple[int, float]]:
  return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("tb")
  train_and_evaluate(tiny_config(), str(workdir))
  return workdir


def test_no_tensorflow_is_installed():
  assert importlib.util.find_spec("tensorflow") is None


def test_event_file_holds_the_losses_of_metrics_jsonl(tb_run):
  metrics = Run(tb_run).read_metrics()
  events = read_events(tb_run / "tensorboard")
  for split in ("train", "test"):
    for key in ("loss", "accuracy", *(("learning_rate",) if split == "train" else ())):
      expected = [(m["step"], m[key]) for m in metrics if m["split"] == split]
      got = scalars(events, f"{split}/{key}")
      assert [s for s, _ in got] == [s for s, _ in expected], (split, key)
      np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)
  logged = [m["step"] for m in metrics if m["split"] == "train"]
  assert logged == LOGGED
  for tag in ("train/grad_norm", "train/images_per_s"):
    got = scalars(events, tag)
    assert [s for s, _ in got] == logged and all(np.isfinite(v) and v > 0 for _, v in got)
  # A histogram of every parameter at the start and after each epoch, of its true values.
  params = Run(tb_run).restore_variables()["params"]
  paths = ["/".join(str(k.key) for k in p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  hists = events.Tags()["histograms"]
  assert sorted(hists) == sorted(f"params/{p}" for p in paths)
  kernel = events.Histograms("params/output/kernel")
  assert [h.step for h in kernel] == [0, 10, 20]
  assert kernel[-1].histogram_value.num == params["output"]["kernel"].size
  np.testing.assert_allclose(kernel[-1].histogram_value.sum, params["output"]["kernel"].sum(),
                             rtol=1e-4)


def test_tensorboard_changes_neither_metrics_nor_parameters(tb_run, tmp_path):
  """The gradient norm is one more output of the same compiled step, nothing else."""
  train_and_evaluate(tiny_config(tensorboard=False), str(tmp_path))
  assert not (tmp_path / "tensorboard").exists()
  assert (tmp_path / "metrics.jsonl").read_bytes() == (tb_run / "metrics.jsonl").read_bytes()
  a, b = Run(tmp_path).restore_variables(), Run(tb_run).restore_variables()
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_a_resumed_run_shows_every_step_once(tb_run, tmp_path):
  """As after a kill past the checkpoint at step 10: steps 11..20 are in the first file and
  written again by the resumed part, whose file purges them from the first."""
  workdir = tmp_path / "w"
  shutil.copytree(tb_run, workdir)
  (workdir / "summary.json").unlink()
  for step in (15, 20):
    shutil.rmtree(workdir / "checkpoints" / str(step))
  (first,) = (workdir / "tensorboard").iterdir()
  summary = train_and_evaluate(tiny_config(), str(workdir))
  assert summary["resumed_from_step"] == 10
  assert (workdir / "metrics.jsonl").read_bytes() == (tb_run / "metrics.jsonl").read_bytes()
  assert [s for s, _ in scalars(read_events(first), "train/loss")] == LOGGED
  unpurged = read_events(workdir / "tensorboard", purge=False)
  assert [s for s, _ in scalars(unpurged, "train/loss")] == LOGGED + [12, 16, 20]
  events = read_events(workdir / "tensorboard")
  metrics = Run(workdir).read_metrics()
  for split in ("train", "test"):
    expected = [(m["step"], m["loss"]) for m in metrics if m["split"] == split]
    got = scalars(events, f"{split}/loss")
    assert [s for s, _ in got] == [s for s, _ in expected]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)
  assert [h.step for h in events.Histograms("params/output/kernel")] == [0, 10, 20]
