"""Shared test set-up: small, fast, deterministic.

* Smoke tests compile with `jax_disable_most_optimizations` (set through the
  environment so CLI subprocesses get it too): XLA compile time dominates tiny runs.
* Prepared TFDS data go to one folder shared by all pytest-xdist workers
  (preparation is serialised by a file lock in `cnn_jax.data.loader`), and so does
  JAX's persistent compilation cache of training runs (not the user's ~/.cache).
"""

import os
import pathlib

import pytest

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def tfds_dir(tmp_path_factory) -> pathlib.Path:
  """One TFDS data dir for the whole test session, shared across xdist workers."""
  shared = tmp_path_factory.getbasetemp().parent / "tfds_data"
  shared.mkdir(parents=True, exist_ok=True)
  os.environ["TFDS_DATA_DIR"] = str(shared)
  # JAX's compilation cache of training runs (and of their CLI subprocesses): one folder
  # for the session, shared by the workers (JAX locks it), never the user's ~/.cache.
  os.environ["CNN_JAX_COMPILATION_CACHE"] = str(shared.parent / "jax_compilation_cache")
  return shared


FASHION_MNIST_PRESENT = all(
    (pathlib.Path("/usr/share/datasets/fashion-mnist") / n).is_file()
    for n in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
) or bool(os.environ.get("CNN_JAX_DATA"))

needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_PRESENT,
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)
