"""Data: any TFDS data set by name, plus offline `digits` and `fashion_mnist` builders."""

from cnn_jax.data.idx import DataError
from cnn_jax.data.loader import (
    LOCAL_DATASETS,
    Split,
    UnknownDatasetError,
    dataset_builder,
    load_split,
    tfds_data_dir,
)
from cnn_jax.data.pipeline import (
    Normalization,
    batch_from_permutation,
    epoch_permutation,
    iterate_batches,
)

__all__ = [
    "LOCAL_DATASETS",
    "DataError",
    "Normalization",
    "Split",
    "UnknownDatasetError",
    "batch_from_permutation",
    "dataset_builder",
    "epoch_permutation",
    "iterate_batches",
    "load_split",
    "tfds_data_dir",
]
