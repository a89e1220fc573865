"""Does `steps_per_call=K` give the K=1 run's bits? Whole runs, compiled as a real run is.

  python benchmarks/steps_per_call_check.py [--k=4] [--devices=8] [--cases=bn_cnn,...]
      [--cpu-convolutions=default|eigen]

Trains each case for one epoch on scikit-learn's digits at `steps_per_call=1` and at
`--k` (log every 7 steps, save every 10, so calls are cut short as in a real run), with
XLA's default optimisations (the test suite compiles with most of them off), and prints
per case whether `metrics.jsonl` and the saved variables are equal, and otherwise the
largest difference of the logged losses and of each variable. It runs on the CPU, where
the guarantee holds, even on a machine with an accelerator. `--devices` splits the CPU
into that many devices (set before JAX starts), for the `jit8` / `pmap8` cases.
`--cpu-convolutions` sets every case's `config.cpu_convolutions` (the pmap cases run only
with the default: pmap takes no compiler options).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

SMALL_BN_CNN = {"batch_size": 64, "model.conv_features": (8, 16),
                "model.dense_features": (32,), "model.batch_norm": True}
CASES = {  # name: (config file, overrides)
    "cnn": ("configs/simple_cnn_digits.py", {**SMALL_BN_CNN, "model.batch_norm": False}),
    "bn_cnn": ("configs/simple_cnn_digits.py", SMALL_BN_CNN),
    "lenet5": ("configs/lenet5_digits.py", {"batch_size": 64}),
    # the speed run's network (BatchNorm, bf16, crops and flips, SGD) at small widths
    "speedrun_net": ("configs/speedrun_fashion_mnist.py", {
        "data.name": "digits", "batch_size": 64, "eval_batch_size": 64,
        "model.widths": (8, 16, 16)}),
    "resnet20": ("configs/resnet20_fashion_mnist.py", {
        "data.name": "digits", "data.image_size": 16, "batch_size": 64,
        "eval_batch_size": 64}),
    "mlp_sigmoid_dropout": ("configs/mlp_fashion_mnist.py", {
        "data.name": "digits", "batch_size": 64, "model.hidden": (64, 32),
        "model.dropout": 0.2}),
    "bn_cnn_jit8": ("configs/simple_cnn_digits.py", {**SMALL_BN_CNN, "parallelism": "jit"}),
    "bn_cnn_pmap8": ("configs/simple_cnn_digits.py", {**SMALL_BN_CNN, "parallelism": "pmap"}),
    "cnn_pmap8": ("configs/simple_cnn_digits.py", {
        **SMALL_BN_CNN, "model.batch_norm": False, "parallelism": "pmap"}),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--k", type=int, default=4)
  parser.add_argument("--devices", type=int, default=8)
  parser.add_argument("--cases", default=",".join(CASES))
  parser.add_argument("--cpu-convolutions", default="default")
  args = parser.parse_args()
  os.environ["JAX_PLATFORMS"] = "cpu"  # the guarantee is the CPU's (steps.train_steps)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={args.devices}")
  sys.path.insert(0, str(REPO))
  import jax
  import numpy as np

  jax.config.update("jax_disable_most_optimizations", False)  # as a real run compiles

  from cnn_jax.run import Run
  from cnn_jax.train import train_and_evaluate
  from cnn_jax.train.config import load_config

  def run(workdir: pathlib.Path, config_file: str, overrides: dict) -> tuple[list, dict]:
    config = load_config(str(REPO / config_file), {
        "num_epochs": 1, "log_every_steps": 7, "checkpoint_every_steps": 10, **overrides})
    train_and_evaluate(config, str(workdir))
    run = Run(workdir)
    lines = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    return lines, run.restore_variables()

  print(f"# python benchmarks/steps_per_call_check.py --k={args.k} --devices={args.devices}"
        f" --cases={args.cases} --cpu-convolutions={args.cpu_convolutions}")
  print(f"# jax {jax.__version__}, {jax.device_count()} {jax.default_backend()} devices")
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.cases.split(","):
      config_file, overrides = CASES[name]
      if args.cpu_convolutions != "default":
        if overrides.get("parallelism") == "pmap":
          print(f"{name:14s} skipped: cpu_convolutions={args.cpu_convolutions!r} needs sharded jit")
          continue
        overrides = {**overrides, "cpu_convolutions": args.cpu_convolutions}
      start = time.time()
      one_metrics, one_vars = run(pathlib.Path(tmp) / f"{name}_1", config_file, overrides)
      k_metrics, k_vars = run(pathlib.Path(tmp) / f"{name}_{args.k}", config_file,
                              {**overrides, "steps_per_call": args.k})
      diffs = jax.tree_util.tree_leaves_with_path(jax.tree.map(
          lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64)
                                           - np.asarray(b, np.float64)), initial=0.0)),
          k_vars, one_vars))
      losses = [abs(a["loss"] - b["loss"]) for a, b in zip(k_metrics, one_metrics)
                if "loss" in a and "loss" in b]
      equal = k_metrics == one_metrics and all(d == 0 for _, d in diffs)
      print(f"{name:14s} K={args.k} vs K=1: metrics.jsonl equal {k_metrics == one_metrics}, "
            f"variables equal {all(d == 0 for _, d in diffs)} ({time.time() - start:.0f} s)")
      if not equal:
        print(f"  largest logged-loss difference {max(losses, default=0.0):.3g}")
        for path, d in diffs:
          if d:
            print(f"  {jax.tree_util.keystr(path):60s} {d:.3g}")


if __name__ == "__main__":
  main()
