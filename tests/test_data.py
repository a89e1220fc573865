import gzip
import pathlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import FASHION_MNIST_DIR, needs_fashion_mnist

from cnn_jax import data
from cnn_jax.data import datasets, idx


def test_digits_split_is_fixed_stratified_80_20():
  from sklearn.datasets import load_digits

  d = load_digits()
  split = datasets.digits_split()
  train, test = split["train"], split["test"]
  assert len(train) == 1438 and len(test) == 359
  assert len(np.intersect1d(train, test)) == 0 and len(np.union1d(train, test)) == 1797
  for c in range(10):
    n_c = np.sum(d.target == c)
    assert np.sum(d.target[test] == c) == round(0.2 * n_c)
  np.testing.assert_array_equal(datasets.digits_split()["test"], test)  # fixed


def test_digits_through_tfds_matches_sklearn():
  from sklearn.datasets import load_digits

  d = load_digits()
  s = data.load_split("digits", "test")
  assert s.images.shape == (359, 8, 8, 1) and s.images.dtype == np.uint8 and s.num_classes == 10
  # Every stored image maps back to its sklearn original (pixel v -> round(v*255/16)).
  originals = {
      np.round(d.images[i] * 255 / 16).astype(np.uint8).tobytes(): d.target[i]
      for i in datasets.digits_split()["test"]
  }
  for img, label in zip(s.images, s.labels):
    assert originals[img[..., 0].tobytes()] == label


@needs_fashion_mnist
def test_fashion_mnist_is_the_real_70000_images():
  train = data.load_split("fashion_mnist", "train")
  test = data.load_split("fashion_mnist", "test")
  assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(train.labels), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
  assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"


@pytest.fixture
def only_dir(monkeypatch, tmp_path):
  """Make `tmp_path/idx` the only place Fashion-MNIST can be found."""
  monkeypatch.setattr(idx, "DEBIAN_DIR", str(tmp_path / "nowhere"))
  monkeypatch.delenv(idx.ENV_VAR, raising=False)
  folder = tmp_path / "idx"
  folder.mkdir()
  return folder


def test_missing_fashion_mnist_names_files_and_fix(only_dir, tmp_path):
  (only_dir / "train-images-idx3-ubyte.gz").write_bytes(b"")
  with pytest.raises(data.DataError) as e:
    data.load_split("fashion_mnist", "train", data_dir=str(only_dir), tfds_dir=str(tmp_path / "t"))
  msg = str(e.value)
  assert "t10k-labels-idx1-ubyte.gz" in msg and "apt-get install dataset-fashion-mnist" in msg
  assert not (tmp_path / "t" / "fashion_mnist_offline" / "1.0.0" / "dataset_info.json").exists()


def _tiny_idx(path: pathlib.Path, payload: bytes) -> None:
  path.write_bytes(gzip.compress(payload))


@pytest.mark.parametrize("damage", ["truncated", "bitflip"])
def test_corrupt_fashion_mnist_file_is_named(only_dir, tmp_path, damage):
  for name in idx.FASHION_MNIST_FILES:
    _tiny_idx(only_dir / name, b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + bytes(10))
  bad = only_dir / "t10k-images-idx3-ubyte.gz"
  raw = gzip.compress(bytes(1000))
  bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else raw)
  with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz.*corrupt"):
    idx.read_idx(bad)


@needs_fashion_mnist
def test_real_file_passes_and_single_byte_change_fails(only_dir):
  src = FASHION_MNIST_DIR  # $CNN_JAX_DATA or Debian's package (only_dir hides both)
  labels = gzip.decompress((src / "t10k-labels-idx1-ubyte.gz").read_bytes())
  _tiny_idx(only_dir / "t10k-labels-idx1-ubyte.gz", labels)  # re-gzipped: other bytes, same payload
  assert idx.read_idx(only_dir / "t10k-labels-idx1-ubyte.gz").shape == (10000,)
  flipped = bytearray(labels)
  flipped[100] = (flipped[100] + 1) % 10
  _tiny_idx(only_dir / "t10k-labels-idx1-ubyte.gz", bytes(flipped))
  with pytest.raises(data.DataError, match="fails its MD5 check"):
    idx.read_idx(only_dir / "t10k-labels-idx1-ubyte.gz")


def test_tfds_path_for_a_dataset_that_is_not_present_with_mock_data():
  with tfds.testing.mock_data(num_examples=12):
    s = data.load_split("mnist", "train", download=True)
  assert s.images.shape == (12, 28, 28, 1) and s.images.dtype == np.uint8
  assert s.labels.shape == (12,) and s.num_classes == 10


def test_unprepared_tfds_dataset_says_how_to_get_it(tmp_path):
  with pytest.raises(data.DataError, match="'mnist' is not prepared.*tfds build mnist"):
    data.load_split("mnist", "train", tfds_dir=str(tmp_path))


def test_cifar10_without_its_archive_names_the_file_and_both_ways_to_get_it(tmp_path, monkeypatch):
  from cnn_jax.data import cifar

  monkeypatch.setenv("CNN_JAX_DATA", str(tmp_path / "nothing_here"))
  monkeypatch.setattr(cifar, "CACHE_DIR", tmp_path / "no_cache")
  with pytest.raises(data.DataError, match="cifar-10-python.tar.gz not found.*--download"):
    data.load_split("cifar10", "train", data_dir=str(tmp_path / "raw"), tfds_dir=str(tmp_path))


def test_unknown_dataset_name_lists_the_offline_ones():
  with pytest.raises(data.UnknownDatasetError, match="Unknown data set 'fashon_mnist'.*digits, fashion_mnist"):
    data.load_split("fashon_mnist", "train")


def test_epoch_permutation_is_a_function_of_seed_and_epoch():
  key = jax.random.key(0)
  p0 = np.asarray(data.epoch_permutation(key, 0, 100))
  assert sorted(p0) == list(range(100))
  np.testing.assert_array_equal(p0, data.epoch_permutation(jax.random.key(0), 0, 100))
  assert not np.array_equal(p0, data.epoch_permutation(key, 1, 100))
  assert not np.array_equal(p0, data.epoch_permutation(jax.random.key(1), 0, 100))
  images = np.arange(100)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
  xb, yb = data.batch_from_permutation(images, np.arange(100), p0, 3, 10)
  np.testing.assert_array_equal(yb, p0[30:40])
  np.testing.assert_array_equal(xb[:, 0, 0, 0], p0[30:40])


def test_normalization_standardises_and_resizes():
  split = data.Split("x", "train", np.full((4, 8, 8, 1), 255, np.uint8), np.zeros(4, np.int32), 2)
  split.images[:2] = 0
  norm = data.Normalization.from_split(split, image_size=16)
  x = np.asarray(norm(split.images))
  assert x.shape == (4, 16, 16, 1)
  np.testing.assert_allclose([x.mean(), x.std()], [0.0, 1.0], atol=1e-5)


def test_iterate_batches_covers_split_once():
  s = data.Split("x", "train", np.zeros((10, 2, 2, 1), np.uint8), np.arange(10, dtype=np.int32), 10)
  seen = np.concatenate([y for _, y in data.iterate_batches(s, 4, seed=0)])
  assert sorted(seen) == list(range(10))
  assert [len(y) for _, y in data.iterate_batches(s, 4, drop_remainder=True)] == [4, 4]
