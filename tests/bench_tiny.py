"""A reduced features-vs-learned suite for tests, runnable as a script for kill tests.

  python tests/bench_tiny.py WORKDIR
"""

import sys

import ml_collections

from cnn_jax import benchmark
from cnn_jax.benchmark import experiments as full

SUITE = "test_tiny"


def _tiny_lenet5(dataset: str, seed: int) -> ml_collections.ConfigDict:
  config = full._lenet5(dataset, seed)
  config.train.num_epochs = 3
  config.train.batch_size = 64
  config.train.log_every_steps = 11
  config.train.checkpoint_every_steps = 10
  return config


def register() -> None:
  if SUITE in benchmark.SUITES:
    return
  benchmark.register(benchmark.Experiment(
      name="tiny_lenet5", kind="learned", representation="LeNet-5, 3 epochs", runner="train",
      build=_tiny_lenet5,
  ))
  benchmark.register(benchmark.Experiment(
      name="tiny_lenet5_frozen", kind="learned", representation="frozen tiny LeNet-5 F6",
      runner="probe", build=full._frozen_lenet5, needs="tiny_lenet5",
  ))
  benchmark.register_suite(SUITE, ("raw", "hog", "random_conv", "tiny_lenet5", "tiny_lenet5_frozen"))


if __name__ == "__main__":
  from absl import logging

  logging.set_verbosity(logging.INFO)
  register()
  benchmark.run_suite(SUITE, "digits", 2, sys.argv[1])
