"""Published reference numbers (from the project's ANCHORS.md) that tables print beside
their own, so a reader sees at once how a result compares."""

from __future__ import annotations

# Fashion-MNIST test accuracy: Xiao, Rasul & Vollgraf 2017 (arXiv:1708.07747) and the
# benchmark table of the data set's README.
FASHION_MNIST = {
    "human": ("human (crowd-sourced, 1,000 images)", 0.835),
    "svc_linear_raw": ("SVC linear kernel, C=1, raw pixels", 0.839),
    "logreg_raw": ("LogisticRegression, raw pixels", 0.842),
    "mlp_raw": ("MLP 100-10 ReLU, raw pixels", 0.870),
    "svc_rbf_raw": ("SVC RBF kernel, C=10, raw pixels", 0.897),
    "two_conv": ("2 conv + pooling (TensorFlow tutorial)", 0.916),
    "hog_svm": ("HOG + SVM", 0.926),
    "two_conv_bn_aug": ("2 conv + 3 FC, batch norm, augmentation", 0.934),
    "googlenet": ("GoogLeNet, cross-entropy", 0.937),
    "resnet18_aug": ("ResNet-18 with augmentation", 0.949),
    "wrn_40_4": ("WRN-40-4", 0.967),
}

# scikit-learn digits, first half train / second half test (scikit-learn's example).
DIGITS = {
    "svc_rbf_raw": ("SVC(gamma=0.001), raw pixels", 0.969),
    "logreg_raw": ("scaler + LogisticRegression, raw pixels", 0.939),
    "linear_svc_raw": ("LinearSVC, raw pixels", 0.910),
}

# MNIST test accuracy (LeCun et al. 1998, the MNIST page, Khan 2017, Bruna & Mallat 2013).
MNIST = {
    "linear_raw": ("linear classifier, raw pixels", 0.880),
    "rbf_svm_raw": ("RBF SVM, raw pixels", 0.986),
    "hog_svm": ("HOG + SVM", 0.9936),
    "lenet5": ("LeNet-5", 0.9905),
    "scattering_svm": ("scattering + SVM", 0.9957),
}

# CIFAR-10 accuracy.
CIFAR10 = {
    "linear_raw": ("raw pixels + linear", 0.37),
    "scattering_linear": ("scattering 2nd order + linear", 0.705),
    "kmeans_triangle": ("single-layer k-means, triangle activation (Coates et al. 2011)", 0.796),
}

BY_DATASET = {
    "fashion_mnist": FASHION_MNIST, "digits": DIGITS, "mnist": MNIST, "cifar10": CIFAR10,
}

# Which anchor a (features, probe) row is compared with, per data set.
_MATCH = {
    ("raw", "linear"): "logreg_raw",
    ("raw", "svm"): "svc_rbf_raw",
    ("hog", "svm"): "hog_svm",
    ("hog", "linear"): "hog_svm",
    ("kmeans", "linear"): "kmeans_triangle",
    ("cnn", "linear"): "two_conv",
    ("cnn", "svm"): "two_conv",
}
_FALLBACK = {"fashion_mnist": "hog_svm", "mnist": "hog_svm", "cifar10": "kmeans_triangle"}


def anchor_for(dataset: str, features: str, probe: str) -> tuple[str, float] | None:
  """The published (description, accuracy) to print beside a probe result, or None."""
  table = BY_DATASET.get(dataset)
  if not table:
    return None
  key = _MATCH.get((features, probe))
  if key in table:
    return table[key]
  fallback = _FALLBACK.get(dataset) or ("svc_rbf_raw" if "svc_rbf_raw" in table else None)
  return table.get(fallback) if fallback else None
