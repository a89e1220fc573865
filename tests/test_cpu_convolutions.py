"""`config.cpu_convolutions`: XLA:CPU's kernels for the steps' convolutions (parallel.py)."""

import jax
import numpy as np
import pytest
from conftest import small_digits_cnn_run

from cnn_jax.errors import ConfigError
from cnn_jax.train import parallel, train_and_evaluate
from cnn_jax.train.config import load_config

cpu_only = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="cpu_convolutions chooses XLA:CPU's convolutions")


def _config(**overrides):
  return load_config("configs/simple_cnn_digits.py", {"num_epochs": 1, **overrides})


@cpu_only
def test_eigen_convolutions_give_other_rounding_and_the_same_bits_every_time(tmp_path, optimized):
  """Compiled as a real run is (`optimized`): "eigen" reaches XLA (the logged losses differ
  from the default convolutions' in the last bits) and is as reproducible as the default."""
  default_metrics, _ = small_digits_cnn_run(tmp_path / "default")
  metrics, variables = small_digits_cnn_run(tmp_path / "eigen", cpu_convolutions="eigen")
  again_metrics, again_variables = small_digits_cnn_run(
      tmp_path / "eigen_again", cpu_convolutions="eigen")
  assert metrics == again_metrics
  jax.tree.map(np.testing.assert_array_equal, variables, again_variables)
  assert metrics != default_metrics


@cpu_only
def test_eigen_takes_the_convolutions_out_of_library_fusions_and_nothing_else(optimized):
  """By default this jaxlib hands a convolution's kernel gradient and a matrix product to
  YNNPACK library fusions (`kind=kCustom` in the compiled HLO); "eigen" leaves the
  convolution a plain XLA operation and the product where it was."""
  x, k = np.ones((8, 8, 8, 32), np.float32), np.ones((3, 3, 32, 64), np.float32)

  def conv_kernel_grad(x, k):
    conv = lambda k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    out, vjp = jax.vjp(conv, k)
    return vjp(jax.numpy.ones_like(out))[0]

  def product(x, k):
    return x.reshape(-1, 32) @ k[0, 0]

  def library_fusions(fn, options):
    return jax.jit(fn, compiler_options=options).lower(x, k).compile().as_text().count(
        "kind=kCustom")

  eigen = parallel.cpu_compiler_options("eigen")
  if not library_fusions(conv_kernel_grad, None):
    pytest.skip(f"jaxlib {jax.__version__} hands no convolution to a library fusion")
  assert library_fusions(conv_kernel_grad, eigen) == 0
  assert library_fusions(product, eigen) == library_fusions(product, None)


def test_unknown_convolutions_and_pmap_are_refused_before_the_workdir(tmp_path):
  with pytest.raises(ConfigError, match="Unknown cpu_convolutions 'fast'. Known: 'default', "):
    train_and_evaluate(_config(cpu_convolutions="fast"), str(tmp_path / "fast"))
  assert not (tmp_path / "fast").exists()
  if jax.default_backend() == "cpu":  # off the CPU the choice does not apply
    with pytest.raises(ConfigError, match="needs parallelism='jit'"):
      train_and_evaluate(_config(cpu_convolutions="eigen", parallelism="pmap"), str(tmp_path / "p"))
    assert not (tmp_path / "p").exists()


@cpu_only
def test_an_option_this_jaxlib_does_not_know_is_a_config_error(monkeypatch):
  monkeypatch.setitem(parallel.CPU_CONVOLUTIONS, "eigen", {"xla_cpu_no_such_option_zz": 1})
  with pytest.raises(ConfigError, match="rejects .*no_such_option_zz.*cpu_convolutions=default"):
    parallel.cpu_compiler_options("eigen")
