"""The registered experiments and suites (one place: add a row here).

Parameters are chosen per data set: digits are 8x8, Fashion-MNIST / MNIST 28x28.
"""

from __future__ import annotations

import ml_collections

from cnn_jax.benchmark.registry import Experiment, register, register_suite
from cnn_jax.train.config import default_train_config

SMALL = "digits"  # the 8x8 data set; everything else here is 28x28

# Feature parameters: (digits, 28x28).
FEATURES = {
    "raw": ({}, {}),
    "hog": (
        dict(orientations=9, pixels_per_cell=2, cells_per_block=2),
        dict(orientations=9, pixels_per_cell=4, cells_per_block=2),
    ),
    "lbp": (dict(pixels_per_cell=4), dict(pixels_per_cell=7)),
    "gabor": (
        dict(frequencies=(0.25, 0.35, 0.45), orientations=8, pool=4),
        dict(frequencies=(0.1, 0.2, 0.3, 0.4), orientations=8, pool=7),
    ),
    "random_conv": (
        dict(features=64, kernel_size=3, pool=2), dict(features=64, kernel_size=5, pool=4),
    ),
    "kmeans": (
        dict(num_centroids=128, patch_size=3, num_patches=50_000, iterations=10),
        dict(num_centroids=400, patch_size=6, num_patches=100_000, iterations=10),
    ),
}
LINEAR = dict(name="linear", l2=1e-4, steps=500)
SVM = dict(name="svm", C=10.0, gamma="scale")
SVM_MAX_TRAIN = 20_000  # a fixed random subset of the training split (from the seed)


def _probe_builder(features: str, probe: dict, **feature_overrides):
  def build(dataset: str, seed: int) -> ml_collections.ConfigDict:
    params = dict(FEATURES[features][0 if dataset == SMALL else 1], **feature_overrides)
    if features in ("random_conv", "kmeans"):
      params["seed"] = seed
    probe_params = dict(probe, seed=seed)
    if probe["name"] == "svm" and dataset != SMALL:
      # An RBF SVM costs O(N^2): 60,000 images take about an hour on 2 CPU cores.
      probe_params["max_train"] = SVM_MAX_TRAIN
    return ml_collections.ConfigDict(
        {"features": {"name": features, **params}, "probe": probe_params}
    )

  return build


def _lenet5(dataset: str, seed: int) -> ml_collections.ConfigDict:
  c = default_train_config()
  c.data.name = dataset
  c.model.name = "lenet5"
  c.model.activation = "tanh"
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  if dataset == SMALL:  # see configs/lenet5_digits.py
    c.data.image_size = 24
    c.model.pool = "max"
    c.optimizer.weight_decay = 0.05
    c.batch_size, c.eval_batch_size, c.num_epochs, c.log_every_steps = 32, 512, 30, 45
  else:
    c.model.pool = "max"
    c.optimizer.weight_decay = 1e-4
    c.batch_size, c.num_epochs, c.log_every_steps = 64, 10, 200
  c.seed = seed
  return ml_collections.ConfigDict({"train": c})


def _simple_cnn(dataset: str, seed: int) -> ml_collections.ConfigDict:
  c = default_train_config()
  c.data.name = dataset
  c.model.name = "simple_cnn"
  c.model.conv_features = (32, 64)
  c.model.kernel_size = 3
  c.model.dense_features = (128,)
  c.model.activation = "relu"
  c.model.pool = "max"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  if dataset == SMALL:
    c.data.image_size = 16  # two 2x2 poolings of 8x8 would leave 2x2 maps
    c.batch_size, c.eval_batch_size, c.num_epochs, c.log_every_steps = 32, 512, 20, 45
  else:
    c.batch_size, c.num_epochs = 128, 5
  c.seed = seed
  return ml_collections.ConfigDict({"train": c})


def _frozen_lenet5(dataset: str, seed: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "features": {"name": "cnn", "layer": "F6"},
      "probe": dict(LINEAR, seed=seed),
  })


for name, kind, representation, build, anchors, uses_seed in [
    ("raw", "engineered", "standardised pixels", _probe_builder("raw", LINEAR),
     {"fashion_mnist": "logreg_raw", "mnist": "linear_raw", "digits": "logreg_raw"}, False),
    ("hog", "engineered", "HOG, 9 orientations, L2-Hys", _probe_builder("hog", LINEAR),
     {"fashion_mnist": "hog_svm", "mnist": "hog_svm"}, False),
    ("hog_svm", "engineered", "HOG + RBF SVM (C=10; <= 20k train)", _probe_builder("hog", SVM),
     {"fashion_mnist": "hog_svm", "mnist": "hog_svm"}, False),
    ("lbp", "engineered", "LBP (8,1) uniform, cell histograms", _probe_builder("lbp", LINEAR),
     {}, False),
    ("gabor", "engineered", "Gabor bank, magnitude, pooled", _probe_builder("gabor", LINEAR),
     {}, False),
    ("random_conv", "random", "random conv-ReLU-pool (untrained)",
     _probe_builder("random_conv", LINEAR), {}, True),
    ("kmeans", "unsupervised", "k-means patches, triangle, quadrant pool",
     _probe_builder("kmeans", LINEAR), {"cifar10": "kmeans_triangle"}, True),
]:
  register(Experiment(
      name=name, kind=kind, representation=representation, runner="probe", build=build,
      anchors=anchors, uses_seed=uses_seed,
  ))

register(Experiment(
    name="simple_cnn", kind="learned", representation="2 conv + pool CNN, end to end",
    runner="train", build=_simple_cnn, anchors={"fashion_mnist": "two_conv"},
))
register(Experiment(
    name="lenet5", kind="learned", representation="LeNet-5, end to end", runner="train",
    build=_lenet5, anchors={"mnist": "lenet5"},
))
register(Experiment(
    name="lenet5_frozen", kind="learned", representation="frozen LeNet-5 F6 + linear probe",
    runner="probe", build=_frozen_lenet5, needs="lenet5",
))

register_suite("features_vs_learned", (
    "raw", "hog", "hog_svm", "lbp", "gabor", "random_conv", "kmeans",
    "simple_cnn", "lenet5", "lenet5_frozen",
))
register_suite("engineered", ("raw", "hog", "hog_svm", "lbp", "gabor"))
register_suite("smoke", ("raw", "hog", "lenet5", "lenet5_frozen"))
