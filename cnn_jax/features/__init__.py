"""Feature extractors, found by name: hand-engineered (raw, hog, lbp, gabor), random
(random_conv), unsupervised (kmeans) and learned (cnn), each a pure, jit-able
`[B, H, W, C] uint8 -> [B, D] float32` function built from a config.

  feats = extract("hog", images_uint8, pixels_per_cell=4)
  fn = make_extractor(ConfigDict(name="kmeans", num_centroids=400), image_shape=(28, 28, 1),
                      train_images=train.images)
"""

from cnn_jax.features.base import (
    EXTRACTORS,
    FeatureFn,
    apply_in_batches,
    extract,
    make_extractor,
)
from cnn_jax.features.cnn import cnn_features
from cnn_jax.features.gabor import gabor_bank, gabor_features, gabor_kernel
from cnn_jax.features.hog import hog_features, hog_output_dim
from cnn_jax.features.lbp import lbp_codes, lbp_features
from cnn_jax.features.learned import (
    KMeansModel,
    fit_kmeans,
    kmeans_features,
    random_conv_features,
    raw_features,
)

__all__ = [
    "EXTRACTORS",
    "FeatureFn",
    "KMeansModel",
    "apply_in_batches",
    "cnn_features",
    "extract",
    "fit_kmeans",
    "gabor_bank",
    "gabor_features",
    "gabor_kernel",
    "hog_features",
    "hog_output_dim",
    "kmeans_features",
    "lbp_codes",
    "lbp_features",
    "make_extractor",
    "random_conv_features",
    "raw_features",
]
