"""Data: registered data set descriptions (offline or TFDS), loading by name, batching."""

from cnn_jax.data.datasets import DATASETS, DatasetInfo, register
from cnn_jax.data.idx import DataError
from cnn_jax.data.loader import (
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
    labelled_indices,
    subset,
)

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetInfo",
    "Normalization",
    "Split",
    "UnknownDatasetError",
    "batch_from_permutation",
    "dataset_builder",
    "epoch_permutation",
    "iterate_batches",
    "labelled_indices",
    "load_split",
    "register",
    "subset",
    "tfds_data_dir",
]
