"""Data set descriptions: one registry entry is all a new data set needs."""

import json
import subprocess
import sys

from conftest import REPO, subprocess_env

from cnn_jax import anchors, data
from cnn_jax.data import datasets


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
  """`python -m MODULE ARGS` with the test's data set registered first (as a user's own
  module would register it)."""
  code = (
      "import sys, runpy, tiny_dataset; "
      f"sys.argv = [{module!r}, *{list(args)!r}]; "
      f"runpy.run_module({module!r}, run_name='__main__')"
  )
  env = subprocess_env(REPO, REPO / "tests")
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600)


def test_a_registered_data_set_runs_in_main_probe_and_benchmark(tmp_path):
  r = _cli("experiments.main", "--config=configs/lenet5_fashion_mnist.py",
           f"--workdir={tmp_path / 'main'}", "--config.data.name=tiny_bars",
           "--config.num_epochs=2", "--config.batch_size=32")
  assert r.returncode == 0, r.stderr[-3000:]
  summary = json.loads((tmp_path / "main" / "summary.json").read_text())
  assert summary["dataset"] == "tiny_bars" and summary["steps"] == 2 * (256 // 32)

  r = _cli("experiments.probe", "--dataset=tiny_bars", "--features=hog")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "tiny_bars  hog" in r.stdout and "dim  1296" in r.stdout  # the entry's 4x4 cells

  r = _cli("experiments.benchmark", "--suite=smoke", "--dataset=tiny_bars", "--seeds=1",
           f"--workdir={tmp_path / 'suite'}")
  assert r.returncode == 0, r.stderr[-3000:]
  table = json.loads((tmp_path / "suite" / "table.json").read_text())
  rows = {row["experiment"]: row for row in table["rows"]}
  assert set(rows) == {"raw", "hog", "lenet5", "lenet5_frozen"}
  assert rows["raw"]["test_accuracy_mean"] > 0.9  # the bars are easy
  assert "A synthetic test data set." in (tmp_path / "suite" / "table.md").read_text()


def test_offline_data_round_trips_through_tfds(tmp_path):
  import tiny_dataset  # noqa: F401  (registers tiny_bars)

  split = data.load_split("tiny_bars", "test", tfds_dir=str(tmp_path))
  images, labels = tiny_dataset._load("test", None)
  assert split.images.shape == (64, 28, 28, 1) and split.num_classes == 10
  # TFDS stores the examples in the order of their hashed keys: the same examples, reordered.
  stored = sorted(zip(map(bytes, split.images), split.labels.tolist()))
  assert stored == sorted(zip(map(bytes, images), labels.tolist()))


def test_entries_hold_the_published_anchors_and_suggested_features():
  fm = datasets.get("fashion_mnist")
  assert fm.anchors["hog_svm"] == ("HOG + SVM", 0.926) and fm.splits["train"] == 60_000
  assert anchors.anchor_for("fashion_mnist", "raw", "linear") == (
      "LogisticRegression, raw pixels", 0.842)
  assert anchors.anchor_for("digits", "hog", "linear") is None  # no HOG anchor on digits
  assert datasets.get("digits").features("hog")["pixels_per_cell"] == 2
  assert fm.features("hog")["pixels_per_cell"] == 4
  assert datasets.get("mnist").features("hog") == fm.features("hog")


def test_configs_give_warmup_in_epochs_resolved_from_the_data_set():
  from cnn_jax.train.config import load_config
  from cnn_jax.train.optim import warmup_steps

  c = load_config("configs/resnet18_fashion_mnist.py")
  assert c.optimizer.warmup_epochs == 2 and c.optimizer.warmup_steps == 0
  assert warmup_steps(c.optimizer, 60_000 // 128) == 2 * 468
  c10 = load_config("configs/resnet18_cifar10.py")
  assert warmup_steps(c10.optimizer, 50_000 // 128) == 2 * 390
