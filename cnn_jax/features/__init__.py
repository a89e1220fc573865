"""Feature extractors, found by name: hand-engineered (raw, hog, lbp, gabor), random
(random_conv), unsupervised (kmeans) and learned (cnn), each `[B, H, W, C] -> [B, D]`.

  feats = extract("hog", images_uint8, pixels_per_cell=4)
  fn = make_extractor(config, image_shape=(28, 28, 1), train_images=train.images)
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
from cnn_jax.features.hog import hog_features, hog_output_dim

__all__ = [
    "EXTRACTORS",
    "FeatureFn",
    "apply_in_batches",
    "default_config",
    "extract",
    "extractor_params",
    "hog_features",
    "hog_output_dim",
    "make_extractor",
    "timed_extract",
]
