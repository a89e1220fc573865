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
    default_config,
    extract,
    extractor_params,
    make_extractor,
    timed_extract,
)
from cnn_jax.features.cnn import cnn_features, load_trained_model, restore_variables
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
    "default_config",
    "extract",
    "extractor_params",
    "fit_kmeans",
    "gabor_bank",
    "gabor_features",
    "gabor_kernel",
    "hog_features",
    "hog_output_dim",
    "kmeans_features",
    "lbp_codes",
    "lbp_features",
    "load_trained_model",
    "make_extractor",
    "random_conv_features",
    "raw_features",
    "restore_variables",
    "timed_extract",
]
