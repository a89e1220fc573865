"""A reduced layer-wise pre-training suite on digits for tests, runnable as a script for kill tests.

  python tests/pretrain_tiny.py WORKDIR [SUITE]
"""

import sys

from cnn_jax import benchmark

SUITE = "test_pretrain_tiny"
KILL_SUITE = "test_pretrain_kill"  # one pre-training and the two runs that read it
SIZES = {"tmlp": (100, 400), "tconv": (400,)}


def register() -> None:
  if SUITE in benchmark.SUITES:
    return
  for arch, recipe, model, top in [
      ("tmlp", "configs/mlp_fashion_mnist.py", {"model.hidden": (48, 24)}, "fc2"),
      ("tconv", "configs/conv_stack_fashion_mnist.py",
       {"model.conv_features": (4, 8), "model.kernel_size": 3}, "conv2"),
  ]:
    benchmark.register(benchmark.Experiment(
        name=f"{arch}_pretrain", kind="unsupervised", representation=f"{arch} pre-training",
        recipe=recipe, overrides={"data.name": "digits", **model},
        pretrain={"epochs": 3, "batch_size": 64, "checkpoint_every_steps": 7},
    ))
    for n in SIZES[arch]:
      budget = {"data.name": "digits", **model, "num_epochs": 6400 // n, "batch_size": 50,
                "eval_every_epochs": 3200 // n, "checkpoint_every_steps": 0,
                "log_every_steps": 16}
      benchmark.register(benchmark.Experiment(
          name=f"{arch}_scratch_{n}", kind="learned", representation=f"{arch} scratch {n}",
          recipe=recipe, overrides=budget, labels=n, group=f"{arch}: random init",
      ))
      benchmark.register(benchmark.Experiment(
          name=f"{arch}_finetuned_{n}", kind="learned", representation=f"{arch} fine-tuned {n}",
          recipe=recipe, overrides=budget, labels=n, needs=f"{arch}_pretrain",
          group=f"{arch}: pre-trained + fine-tuned",
      ))
      benchmark.register(benchmark.Experiment(
          name=f"{arch}_frozen_{n}", kind="unsupervised", representation=f"{arch} frozen {n}",
          features={"name": "cnn", "layer": top}, needs=f"{arch}_pretrain", labels=n,
          group=f"{arch}: frozen + linear probe",
      ))
  benchmark.register_suite(SUITE, tuple(
      name for arch in ("tmlp", "tconv") for name in (
          f"{arch}_pretrain",
          *(f"{arch}_{how}_{n}" for n in SIZES[arch] for how in ("scratch", "finetuned", "frozen")),
      )
  ))
  benchmark.register_suite(KILL_SUITE, ("tmlp_pretrain", "tmlp_finetuned_100", "tmlp_frozen_100"))


if __name__ == "__main__":
  from absl import logging

  logging.set_verbosity(logging.INFO)
  register()
  benchmark.run_suite(sys.argv[2] if len(sys.argv) > 2 else SUITE, "digits", 1, sys.argv[1])
