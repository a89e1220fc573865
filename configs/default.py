"""Defaults shared by every training config; each config file overrides what it needs.

The fields and their meaning are in `cnn_jax/train/config.py`.
"""

import ml_collections

from cnn_jax.train.config import default_train_config


def get_config() -> ml_collections.ConfigDict:
  return default_train_config()
