"""Which published result a row of ours is compared with.

The published numbers themselves live with their data set (`DatasetInfo.anchors`
in `cnn_jax.data.datasets`), under method keys shared across data sets
("linear_raw", "hog_svm", "two_conv", ...). An experiment names the key of the
method it reproduces; a probe result finds it from its (features, probe) pair.
"""

from __future__ import annotations

from cnn_jax.data import datasets

# The method a (features, probe) pair reproduces.
METHOD = {
    ("raw", "linear"): "linear_raw",
    ("raw", "svm"): "svc_rbf_raw",
    ("hog", "svm"): "hog_svm",
    ("hog", "linear"): "hog_svm",
    ("kmeans", "linear"): "kmeans_triangle",
    ("cnn", "linear"): "two_conv",
    ("cnn", "svm"): "two_conv",
}


def anchor(dataset: str, method: str | None) -> tuple[str, float] | None:
  """The published (description, accuracy) of `method` on `dataset`, or None."""
  if not method or dataset not in datasets.DATASETS:
    return None
  return datasets.get(dataset).anchors.get(method)


def anchor_for(dataset: str, features: str, probe: str) -> tuple[str, float] | None:
  """The published result to print beside a probe of `features` with `probe`, or None."""
  return anchor(dataset, METHOD.get((features, probe)))
