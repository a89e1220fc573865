"""Start-up: the persistent compilation cache, the decoded-array cache, lazy imports."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import subprocess_env

from cnn_jax import data
from cnn_jax.data import loader
from cnn_jax.train import compilation_cache

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_cache_dir_default_environment_and_off(monkeypatch):
  monkeypatch.delenv(compilation_cache.ENV, raising=False)
  assert compilation_cache.cache_dir(None) == pathlib.Path("~/.cache/cnn_jax/jax").expanduser()
  assert compilation_cache.cache_dir("") is None
  monkeypatch.setenv(compilation_cache.ENV, "/tmp/somewhere")
  assert compilation_cache.cache_dir(None) == pathlib.Path("/tmp/somewhere")
  assert compilation_cache.cache_dir("/tmp/mine") == pathlib.Path("/tmp/mine")  # config wins
  monkeypatch.setenv(compilation_cache.ENV, "")
  assert compilation_cache.cache_dir(None) is None


def test_a_fresh_start_loads_the_compiled_function_from_the_cache(tmp_path):
  """A function compiled once is written to the folder; after JAX forgets everything it
  compiled in memory (as a new process would), the same function is a persistent-cache hit."""
  hits = []

  def listen(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
      hits.append(event)

  def f(x):  # quick to compile: JAX's default threshold (1 s) would not store it
    return jnp.tanh(x * 3.0 + 0.25).sum()

  x = jnp.arange(37.0)
  jax.monitoring.register_event_listener(listen)
  try:
    compilation_cache.use_compilation_cache(str(tmp_path / "cache"))
    expected = jax.jit(f)(x)
    entries = [p for p in (tmp_path / "cache").iterdir() if p.name.endswith("-cache")]
    assert entries, "nothing was written to the compilation cache"
    assert not hits
    jax.clear_caches()
    np.testing.assert_array_equal(jax.jit(f)(x), expected)
    assert hits, "the second compilation did not read the cache"

    hits.clear()
    compilation_cache.use_compilation_cache("")  # off: no reads, no writes
    assert not jax.config.jax_enable_compilation_cache
    jax.clear_caches()
    jax.jit(f)(x)
    assert not hits
  finally:
    jax.monitoring.unregister_event_listener(listen)
    compilation_cache.use_compilation_cache(None)  # the session's folder (conftest.py)


def test_unwritable_cache_folder_is_a_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(compilation_cache.ConfigError, match="compilation_cache=''"):
    compilation_cache.use_compilation_cache(str(blocker / "cache"))


def test_decoded_split_is_cached_exactly_and_dropped_when_the_data_change(tmp_path):
  first = data.load_split("digits", "train", tfds_dir=str(tmp_path))
  cache = loader.ArrayCache("digits", "train", tmp_path)
  info = json.loads((cache.directory / "info.json").read_text())
  assert info["source"], "the fingerprint lists the prepared files"
  second = data.load_split("digits", "train", tfds_dir=str(tmp_path))
  assert second.pixel_stats is not None
  np.testing.assert_array_equal(second.images, first.images)
  np.testing.assert_array_equal(second.labels, first.labels)
  assert (second.num_classes, second.class_names) == (first.num_classes, first.class_names)
  # The same statistics, bit for bit, as computing them from the pixels.
  assert data.Normalization.from_split(second) == data.Normalization.from_images(first.images)
  assert data.subset(second, np.arange(10)).pixel_stats is None

  prepared = next(p for p in (tmp_path / "digits").rglob("*") if p.is_file())
  os.utime(prepared, ns=(0, 0))  # prepared again (here: another modification time)
  assert cache.read() is None
  np.testing.assert_array_equal(
      data.load_split("digits", "train", tfds_dir=str(tmp_path)).images, first.images
  )
  assert cache.read() is not None  # stored again for the new files


def test_a_cached_split_and_a_tensorboard_writer_import_neither_tfds_nor_torch(tmp_path):
  data.load_split("digits", "test", tfds_dir=str(tmp_path))  # prepares and caches
  code = (
      "import sys\n"
      "from cnn_jax import data\n"
      "from cnn_jax.run import Run\n"
      f"s = data.load_split('digits', 'test', tfds_dir={str(tmp_path)!r})\n"
      f"Run({str(tmp_path / 'run')!r}).tensorboard_writer().close()\n"
      "print(len(s), sorted(m for m in ('tensorflow_datasets', 'torch') if m in sys.modules))\n"
  )
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env=subprocess_env(), check=True)
  assert out.stdout.split("\n")[0] == "359 []", out.stderr


@pytest.mark.parametrize(
    "name", ["simple_cnn_fashion_mnist", "lenet5_fashion_mnist", "speedrun_fashion_mnist"]
)
def test_initialisation_compiled_quickly_gives_the_default_compilers_bits(name, optimized):
  """create_train_state compiles its one-off function at a low LLVM optimisation level (4x
  quicker to compile on the CPU); the state must be the one XLA's default level computes."""
  if jax.default_backend() != "cpu":
    pytest.skip("the one-off compiler level is set on the CPU only (steps.one_off_compiler_options)")
  from cnn_jax.models import model_from_config
  from cnn_jax.train import steps
  from cnn_jax.train.config import load_config
  from cnn_jax.train.loop import create_optimizer

  config = load_config(f"configs/{name}.py")
  model = model_from_config(config)
  tx, _ = create_optimizer(config.optimizer, 100, 10, train_only=config.train_only)
  shape, key = (28, 28, 1), jax.random.key(7)
  assert steps.one_off_compiler_options() == steps.ONE_OFF_COMPILER_OPTIONS
  quick = steps.create_train_state(model, tx, key, shape)
  default = jax.jit(steps.train_state_initializer(model, tx, shape))(key)

  def bits(state):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                       else x) for x in jax.tree.leaves(state)]

  assert len(bits(quick)) == len(bits(default)) > 4
  for a, b in zip(bits(quick), bits(default)):
    assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("seed", [0, 12345, 2**31, 2**32 + 5, -3])
def test_root_keys_are_the_eager_split_of_the_seed(seed):
  from cnn_jax.train import steps

  eager = jax.random.split(jax.random.key(seed))
  for a, b in zip(steps.root_keys(seed), eager, strict=True):
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))


def test_a_traced_start_marks_every_phase_the_benchmark_reads_in_order(tmp_path):
  """benchmarks/startup.py turns these marks into its breakdown: each phase must be marked,
  once, in the order of its table, and the run must stop after its first step."""
  spec = importlib.util.spec_from_file_location("startup_bench", REPO / "benchmarks" / "startup.py")
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  trace = tmp_path / "trace.txt"
  env = subprocess_env(
      CNN_JAX_STARTUP_TRACE=str(trace), CNN_JAX_STARTUP_EXIT="1", JAX_PLATFORMS="cpu")
  subprocess.run(
      [sys.executable, "-m", "experiments.main", "--config=configs/simple_cnn_digits.py",
       f"--workdir={tmp_path / 'run'}", "--config.compilation_cache=",
       "--config.model.conv_features=(4,)", "--config.model.dense_features=(8,)"],
      cwd=REPO, env=env, check=True, capture_output=True, timeout=300,
  )
  marks = [line.split()[1] for line in trace.read_text().splitlines() if line.startswith("mark ")]
  assert marks == [name for name, _ in bench.PHASES]
  assert not (tmp_path / "run" / "summary.json").exists()  # it exited after the first step
