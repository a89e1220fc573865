"""The project's CPU train step compiled with each set of XLA:CPU's YNNPACK library fusions.

  JAX_PLATFORMS=cpu python benchmarks/ynn_fusion_types.py [--workloads=simple_cnn_b128,lenet5_b128]
      [--repeats=5] [--out=FILE]

XLA:CPU (jaxlib 0.10) hands some operations to YNNPACK "library fusions"; the option
`xla_cpu_experimental_ynn_fusion_type` lists which kinds. `config.cpu_convolutions='eigen'`
takes convolutions out (`INDIVIDUAL_DOT,REDUCE`); this script times that choice against the
other sets the option accepts (`DOT` fuses element-wise work into matrix products, `ELTWISE`
hands element-wise fusions to YNNPACK too), each compiled into the project's step as the loop
compiles it (`benchmarks/train_speed.py`'s `project_step`), repeats interleaved, img/s median.
Only speed is measured: a set other than XLA's default rounds differently.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

sys.path.insert(0, os.path.dirname(__file__))
import train_speed as ts  # the workloads and the timing of benchmarks/train_speed.py

from cnn_jax.train import parallel

EIGEN = "eigen (config.cpu_convolutions)"  # the project's own choice, timed as the loop runs it
SETS = {  # label -> the option's value (each type prefixed LIBRARY_FUSION_TYPE_)
    "eigen + ELTWISE": "INDIVIDUAL_DOT,REDUCE,ELTWISE",
    "DOT,REDUCE": "DOT,REDUCE",
    "DOT,REDUCE,ELTWISE": "DOT,REDUCE,ELTWISE",
    "XLA's default + ELTWISE": "INDIVIDUAL_DOT,INDIVIDUAL_CONVOLUTION,REDUCE,ELTWISE",
}


def main(argv: list[str] | None = None) -> list[str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workloads", default="simple_cnn_b128,lenet5_b128")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=None, help="also write the table here")
  args = parser.parse_args(argv)
  if jax.default_backend() != "cpu":
    sys.exit("XLA:CPU's library fusions: run with JAX_PLATFORMS=cpu.")
  timing = ts.Timing(repeats=args.repeats, warmup=2, min_seconds=0.5)
  info = ts.machine_info()
  lines = [
      f"# python benchmarks/ynn_fusion_types.py --workloads={args.workloads} --repeats={args.repeats}",
      (f"# {info['cpu']} ({info['cpu_count']} CPUs), jax {info['jax']}, commit "
       f"{(info['git_commit'] or '?')[:10]}{' (dirty)' if info['git_dirty'] else ''}, load "
       f"average {tuple(round(x, 2) for x in info['load_average_start'])}"),
  ]
  for name in args.workloads.split(","):
    s = ts.build(ts.WORKLOADS[name])
    contestants = {"XLA's default": ts.Timed(ts.project_step(s)),
                   EIGEN: ts.Timed(ts.project_step(s, cpu_convolutions="eigen"))}
    for label, types in SETS.items():  # registered as cpu_convolutions choices, XLA-checked alike
      parallel.CPU_CONVOLUTIONS[label] = {"xla_cpu_experimental_ynn_fusion_type": ",".join(
          f"LIBRARY_FUSION_TYPE_{t}" for t in types.split(","))}
      contestants[f"{label}: {types}"] = ts.Timed(ts.project_step(s, cpu_convolutions=label))
    rates = ts.throughputs(contestants, timing)
    base = rates["XLA's default"]
    lines.append(f"{name}: img/s (median of {args.repeats}), and against XLA's default")
    lines += [f"  {label:76s} {rate:8,.0f}  {rate / base:5.2f}x" for label, rate in rates.items()]
    print("\n".join(lines[-len(rates) - 1:]), flush=True)
  lines.append(f"# load average at end {tuple(round(x, 2) for x in os.getloadavg())}")
  if args.out:
    with open(args.out, "w") as f:
      f.write("\n".join(lines) + "\n")
  return lines


if __name__ == "__main__":
  main()
