"""CIFAR-10 from the official python archive, without TensorFlow (a tiny archive in its format)."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from cnn_jax import data
from cnn_jax.data import cifar
from cnn_jax.errors import UserError

PER_BATCH = 6  # images per batch file (the real ones hold 10,000)


def _batch(rng, n):
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, n)
  # The official layout: each row is 1,024 red, then green, then blue values, row-major.
  rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)
  blob = pickle.dumps({b"batch_label": b"x", b"labels": [int(v) for v in labels],
                       b"data": rows, b"filenames": [b"f"] * n}, protocol=2)
  return images, labels, blob


def write_archive(path, seed=0):
  """A cifar-10-python.tar.gz with PER_BATCH images per batch; returns the expected splits."""
  rng = np.random.default_rng(seed)
  expected = {"train": [], "test": []}
  with tarfile.open(path, "w:gz") as tar:
    for split, members in cifar.MEMBERS.items():
      for member in members:
        images, labels, blob = _batch(rng, PER_BATCH)
        expected[split].append((images, labels))
        info = tarfile.TarInfo(member)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
  return {s: (np.concatenate([i for i, _ in v]), np.concatenate([l for _, l in v]))
          for s, v in expected.items()}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
  folder = tmp_path_factory.mktemp("cifar_raw")
  return folder, write_archive(folder / cifar.ARCHIVE)


def test_archive_is_read_in_place_in_the_official_layout(archive):
  folder, expected = archive
  for split in ("train", "test"):
    images, labels = cifar.load_cifar10(split, str(folder))
    np.testing.assert_array_equal(images, expected[split][0])
    np.testing.assert_array_equal(labels, expected[split][1])
  assert images.shape == (PER_BATCH, 32, 32, 3) and images.dtype == np.uint8


def test_prepared_once_by_the_offline_builder_and_loaded_by_name(archive, tmp_path):
  folder, expected = archive
  train = data.load_split("cifar10", "train", data_dir=str(folder), tfds_dir=str(tmp_path))
  # TFDS stores examples in its own (fixed) order: compare (image, label) pairs as sets.
  pairs = lambda images, labels: sorted((i.tobytes(), int(l)) for i, l in zip(images, labels))  # noqa: E731
  assert pairs(train.images, train.labels) == pairs(*expected["train"])
  assert train.num_classes == 10 and train.class_names[0] == "airplane"
  assert (tmp_path / "cifar10_offline").is_dir()


def test_a_cifar_config_trains_with_its_augmentation(archive, tmp_path):
  from cnn_jax.train import train_and_evaluate
  from cnn_jax.train.config import load_config

  folder, _ = archive
  config = load_config("configs/resnet20_cifar10.py", {
      "data.data_dir": str(folder), "data.tfds_dir": str(tmp_path / "tfds"), "num_epochs": 1,
      "batch_size": 10, "eval_batch_size": 6, "model.name": "resnet20",
      "optimizer.warmup_epochs": 0, "checkpoint_every_steps": 0,
  })
  assert tuple(config.data.augment) == ("random_crop(pad=4)", "flip_lr")
  summary = train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["steps"] == 3 and 0.0 <= summary["test_accuracy"] <= 1.0


def test_missing_archive_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
  monkeypatch.delenv("CNN_JAX_DATA", raising=False)
  monkeypatch.setattr(cifar, "CACHE_DIR", tmp_path / "cache")
  with pytest.raises(UserError, match=r"cifar-10-python.tar.gz not found in .*empty.*"
                     r"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz.*--download"):
    cifar.find_archive(str(tmp_path / "empty"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  with pytest.raises(UserError, match="refusing to unpickle"):
    cifar.read_batch(pickle.dumps({b"data": Evil(), b"labels": []}), "evil")
  with pytest.raises(UserError, match="expected data \\[N, 3072\\]"):
    cifar.read_batch(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}), "x")
