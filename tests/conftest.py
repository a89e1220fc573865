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

from cnn_jax.data import idx  # noqa: E402  (after the environment above; starts no backend)
from cnn_jax.train import determinism  # noqa: E402

# The tests' processes start JAX as a run with the default `config.deterministic=True`
# would: many tests train in-process after the backend started, where the config can no
# longer set the flag, and compare bits (on a GPU they differ without it; on the CPU XLA
# ignores it). A flag the caller set either way is kept.
if determinism.FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = determinism.with_flag(os.environ.get("XLA_FLAGS", ""), True)

REPO = pathlib.Path(__file__).resolve().parents[1]


def subprocess_env(*paths: pathlib.Path, **overrides: str) -> dict[str, str]:
  """This process's environment for a child Python that imports from `paths` (default:
  the repo) first, then from the caller's own PYTHONPATH (packages installed there, as on
  a machine that carries its wheels in a folder), with `overrides`."""
  path = [str(p) for p in paths or (REPO,)]
  if os.environ.get("PYTHONPATH"):
    path.append(os.environ["PYTHONPATH"])
  return {**os.environ, "PYTHONPATH": os.pathsep.join(path), **overrides}


def small_digits_cnn_run(workdir: pathlib.Path, **overrides) -> tuple[str, dict]:
  """Trains a small digits CNN for one epoch (22 steps of 64; logs every 7, saves every 10)
  in `workdir`; returns its metrics.jsonl text and saved variables, for tests of bits."""
  from cnn_jax.run import Run
  from cnn_jax.train import train_and_evaluate
  from cnn_jax.train.config import load_config

  config = load_config("configs/simple_cnn_digits.py", {
      "num_epochs": 1, "batch_size": 64, "log_every_steps": 7, "checkpoint_every_steps": 10,
      "model.conv_features": (8, 16), "model.dense_features": (32,), **overrides})
  train_and_evaluate(config, str(workdir))
  run = Run(workdir)
  return run.metrics_path.read_text(), run.restore_variables()


def built_once(tmp_path_factory, name: str, build) -> pathlib.Path:
  """A folder `build(folder)` fills once per test session, shared by the xdist workers.

  For module fixtures whose output the tests only read (a suite's workdir): under
  `pytest -n 2` each worker would otherwise run the whole suite again. The first worker
  to ask builds it under a file lock; the others wait and reuse it. A build that fails
  leaves no mark of completion, so the next worker to ask tries again (and fails alike)."""
  import fcntl
  import shutil

  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the session's folder, above the workers' own
  folder, done = root / f"built_{name}", root / f"built_{name}.done"
  with open(root / f"built_{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
      folder.mkdir()
      build(folder)
      done.touch()
  return folder


@pytest.fixture
def optimized():
  """Compiles in-process with XLA's default optimisations, as a real run does, for tests of
  bits: what XLA fuses, and so how it rounds, depends on them."""
  import jax

  previous = jax.config.values["jax_disable_most_optimizations"]
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


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


# The real Fashion-MNIST files, where the project looks for them ($CNN_JAX_DATA, then
# Debian's dataset-fashion-mnist); None without them.
FASHION_MNIST_DIR = next((d for d in idx.search_dirs(None)
                          if all((d / n).is_file() for n in idx.FASHION_MNIST_FILES)), None)
FASHION_MNIST_PRESENT = FASHION_MNIST_DIR is not None

needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_PRESENT,
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)
