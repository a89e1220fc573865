"""A reduced features-vs-learned suite for tests, runnable as a script for kill tests.

  python tests/bench_tiny.py WORKDIR
"""

import sys

from cnn_jax import benchmark

SUITE = "test_tiny"


def register() -> None:
  if SUITE in benchmark.SUITES:
    return
  benchmark.register(benchmark.Experiment(
      name="tiny_lenet5", kind="learned", representation="LeNet-5, 3 epochs",
      recipe="configs/lenet5_{dataset}.py",
      overrides={"num_epochs": 3, "batch_size": 64, "log_every_steps": 11,
                 "checkpoint_every_steps": 10},
  ))
  benchmark.register(benchmark.Experiment(
      name="tiny_lenet5_frozen", kind="learned", representation="frozen tiny LeNet-5 F6",
      features={"name": "cnn", "layer": "F6"}, needs="tiny_lenet5",
  ))
  benchmark.register_suite(SUITE, ("raw", "hog", "random_conv", "tiny_lenet5", "tiny_lenet5_frozen"))


if __name__ == "__main__":
  from absl import logging

  logging.set_verbosity(logging.INFO)
  register()
  benchmark.run_suite(SUITE, "digits", 2, sys.argv[1])
