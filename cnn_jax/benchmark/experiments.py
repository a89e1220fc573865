"""The registered experiments and suites (one place: add a row here).

Probe rows name an extractor and a probe (their parameters for each data set come
from the data set's entry, `cnn_jax.data.datasets`); training rows name the
config file a user would run with `experiments.main`.
"""

from __future__ import annotations

from cnn_jax.benchmark.registry import Experiment, register, register_suite

# An RBF SVM costs O(N^2): on the 60,000 Fashion-MNIST images it fits for about half an
# hour on 2 CPU cores, so the suite trains it on a fixed random subset (from the seed).
SVM_MAX_TRAIN = 20_000

for name, kind, representation, features, probe, uses_seed in [
    ("raw", "engineered", "standardised pixels", "raw", {}, False),
    ("hog", "engineered", "HOG, 9 orientations, L2-Hys", "hog", {}, False),
    ("hog_svm", "engineered", "HOG + RBF SVM (C=10; <= 20k train)", "hog",
     {"name": "svm", "max_train": SVM_MAX_TRAIN}, False),
    ("lbp", "engineered", "LBP (8,1) uniform, cell histograms", "lbp", {}, False),
    ("gabor", "engineered", "Gabor bank, magnitude, pooled", "gabor", {}, False),
    ("random_conv", "random", "random conv-ReLU-pool (untrained)", "random_conv", {}, True),
    ("kmeans", "unsupervised", "k-means patches, triangle, quadrant pool", "kmeans", {}, True),
]:
  register(Experiment(
      name=name, kind=kind, representation=representation, features={"name": features},
      probe={"name": "linear", **probe}, uses_seed=uses_seed,
  ))

# Training recipes: configs/<model>_<dataset>.py; 28x28 data sets without one of their
# own (MNIST) use the Fashion-MNIST recipe.
register(Experiment(
    name="simple_cnn", kind="learned", representation="2 conv + pool CNN, end to end",
    recipe="configs/simple_cnn_{dataset}.py",
    fallback_recipe="configs/simple_cnn_fashion_mnist.py", anchor="two_conv",
))
register(Experiment(
    name="lenet5", kind="learned", representation="LeNet-5, end to end",
    recipe="configs/lenet5_{dataset}.py", fallback_recipe="configs/lenet5_fashion_mnist.py",
    anchor="lenet5",
))
register(Experiment(
    name="lenet5_frozen", kind="learned", representation="frozen LeNet-5 F6 + linear probe",
    features={"name": "cnn", "layer": "F6"}, needs="lenet5",
))

# Local connectivity and parameter sharing, taken away one at a time from the same
# topology (cnn_jax/models/sharing_net.py), each scored on test images moved by 1, 2, 4 px.
for connectivity, representation in [
    ("conv", "conv: local, shared kernels"),
    ("local", "locally connected: local, unshared"),
    ("dense", "dense: global, unshared"),
]:
  register(Experiment(
      name=f"sharing_{connectivity}", kind="learned", representation=representation,
      recipe="configs/parameter_sharing_{dataset}.py",
      overrides={"model.connectivity": connectivity}, shifts=(1, 2, 4),
  ))

register_suite("features_vs_learned", (
    "raw", "hog", "hog_svm", "lbp", "gabor", "random_conv", "kmeans",
    "simple_cnn", "lenet5", "lenet5_frozen",
))
register_suite("engineered", ("raw", "hog", "hog_svm", "lbp", "gabor"))
register_suite("smoke", ("raw", "hog", "lenet5", "lenet5_frozen"))
register_suite("parameter_sharing", ("sharing_conv", "sharing_local", "sharing_dense"))
