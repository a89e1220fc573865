"""The shared probe: it learns what is learnable, deterministically, with train-split statistics."""

import numpy as np
import pytest

from cnn_jax import anchors
from cnn_jax.data import load_split
from cnn_jax.errors import ConfigError
from cnn_jax.probe import linear_probe, standardize, svm_probe


def _blobs(n, d=5, k=3, seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(k, d)) * 4
  y = rng.integers(0, k, n)
  return (centres[y] + rng.normal(size=(n, d))).astype(np.float32) * 100 + 7, y.astype(np.int32)


def test_standardize_uses_train_statistics_only():
  tr = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
  te = np.array([[5.0, 6.0]], np.float32)
  a, b = standardize(tr, te)
  np.testing.assert_allclose(a, [[-1, 0], [1, 0]])
  np.testing.assert_allclose(b, [[3, 1]])  # constant feature: std 1, centred


@pytest.mark.parametrize("batch_size", [None, 32])
def test_linear_probe_separates_blobs_and_is_deterministic(batch_size):
  xtr, ytr = _blobs(300)
  xte, yte = _blobs(200, seed=0)
  kw = dict(l2=1e-4, steps=60 if batch_size is None else 300, seed=0, batch_size=batch_size,
            learning_rate=1e-2)
  r1 = linear_probe(xtr, ytr, xte[:100], yte[:100], **kw)
  r2 = linear_probe(xtr, ytr, xte[:100], yte[:100], **kw)
  assert r1.test_acc > 0.95 and r1.train_acc > 0.95
  assert (r1.train_acc, r1.test_acc) == (r2.train_acc, r2.test_acc)
  assert r1.dim == 5 and r1.num_train == 300 and r1.num_test == 100


def test_linear_probe_is_near_chance_on_shuffled_labels():
  xtr, ytr = _blobs(300)
  r = linear_probe(xtr, np.random.default_rng(0).permutation(ytr), xtr, ytr, steps=40)
  assert r.test_acc < 0.6


def test_probes_on_digits_near_the_published_rows():
  tr, te = load_split("digits", "train"), load_split("digits", "test")
  xtr, xte = tr.images.reshape(len(tr), -1), te.images.reshape(len(te), -1)
  lin = linear_probe(xtr, tr.labels, xte, te.labels, l2=1e-3, steps=100)
  svm = svm_probe(xtr, tr.labels, xte, te.labels)
  assert lin.test_acc > 0.92 and svm.test_acc > 0.96
  assert svm_probe(xtr, tr.labels, xte, te.labels, max_train=200).num_train == 200


def test_probe_rejects_mismatched_shapes():
  with pytest.raises(ConfigError, match="same D"):
    linear_probe(np.zeros((4, 3)), np.zeros(4, int), np.zeros((4, 2)), np.zeros(4, int))


def test_anchors_match_the_published_table():
  assert anchors.anchor_for("fashion_mnist", "hog", "svm") == ("HOG + SVM", 0.926)
  assert anchors.anchor_for("fashion_mnist", "raw", "linear")[1] == 0.842
  assert anchors.anchor_for("digits", "raw", "svm")[1] == 0.969
  assert anchors.anchor_for("imagenet2012", "raw", "linear") is None
