"""Start-up of `experiments.main`: from the command to the end of the first training step.

  python benchmarks/startup.py [--config=configs/simple_cnn_fashion_mnist.py] [--runs=3]

Runs the real command in fresh processes with `$CNN_JAX_STARTUP_TRACE` set
(`cnn_jax/startup.py`): each phase of the run marks its end in a trace file, JAX's
compile events go there too, and the process exits right after the first training
step has finished (`$CNN_JAX_STARTUP_EXIT=1`). The clock starts just before the
process is spawned, so interpreter start-up counts. Prints, per phase, the minimum
over `--runs` runs (the machine may be shared: the minimum is the least disturbed
figure) and the median, for three cache states:

* cold: an empty JAX compilation cache (`--config.compilation_cache=<new folder>`);
* warm: the same folder again, as a rerun or a resume finds it;
* off: `--config.compilation_cache=` (no persistent cache).

A second table splits the import time by top-level package (`python -X importtime`,
self time summed per package, one run). The data set must be prepared already (run
the command once); the data cache (`cnn_jax/data/loader.py`) is whatever it holds.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

# (mark, what the time up to it, from the previous mark, is spent on)
PHASES = (
    ("imports_done", "interpreter start + imports"),
    ("flags_parsed", "flags, config file, absl start"),
    ("backend_started", "JAX backend start (devices; CUDA on a GPU)"),
    ("data_loaded", "data: read train + test splits"),
    ("normalization", "data: pixel statistics"),
    ("model_init", "model + optimiser init"),
    ("setup_done", "parallel set-up (jit wrappers)"),
    ("checkpointer", "config.json + checkpoint manager"),
    ("restore", "look for a checkpoint to resume"),
    ("device_put", "data to the device"),
    ("tensorboard", "TensorBoard writer + step-0 histograms"),
    ("first_step_done", "first step: permutation, compile, run"),
)


def _pythonpath() -> str:
  """The repo first, then the caller's PYTHONPATH (packages installed in a folder)."""
  return os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)


def run_once(config: str, cache: str | None, extra: list[str]) -> dict[str, float]:
  """One start-up: seconds per phase, plus compile totals (`compile:*`) and cache counts."""
  with tempfile.TemporaryDirectory() as tmp:
    trace = pathlib.Path(tmp) / "trace.txt"
    env = dict(os.environ, CNN_JAX_STARTUP_TRACE=str(trace), CNN_JAX_STARTUP_EXIT="1",
               PYTHONPATH=_pythonpath())
    cmd = [sys.executable, "-m", "experiments.main", f"--config={config}",
           f"--workdir={tmp}/work", *extra]
    if cache is not None:
      cmd.append(f"--config.compilation_cache={cache}")
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
      sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    marks, out = {}, collections.defaultdict(float)
    for line in trace.read_text().splitlines():
      kind, name, value, *_ = line.split()
      if kind == "mark":
        marks[name] = float(value)
      elif name.endswith(("cache_hits", "cache_misses")):
        out[name.rsplit("/", 1)[1]] += 1
      elif name.endswith("backend_compile_duration"):
        out["compile:xla"] += float(value)
      elif name.endswith(("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration")):
        out["compile:trace+lower"] += float(value)
      elif name.endswith("cache_retrieval_time_sec"):
        out["compile:cache read"] += float(value)
  previous = start
  for mark, _ in PHASES:
    out[mark] = marks[mark] - previous
    previous = marks[mark]
  out["total"] = marks["first_step_done"] - start
  return dict(out)


def import_breakdown() -> list[tuple[str, float]]:
  """Self import time (s) per top-level package of `import experiments.main`, largest first."""
  proc = subprocess.run(
      [sys.executable, "-X", "importtime", "-c", "import experiments.main"],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=_pythonpath()), capture_output=True, text=True,
      check=True,
  )
  per_package = collections.defaultdict(float)
  for line in proc.stderr.splitlines():
    if not line.startswith("import time:") or "self [us]" in line:
      continue
    self_us, _, name = line[len("import time:"):].split("|")
    per_package[name.strip().split(".")[0]] += int(self_us) / 1e6
  return sorted(per_package.items(), key=lambda kv: -kv[1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/simple_cnn_fashion_mnist.py")
  parser.add_argument("--runs", type=int, default=3)
  parser.add_argument("--modes", default="cold,warm,off",
                      help="comma-separated cache states to measure: cold, warm, off, default "
                      "(no --config.compilation_cache flag)")
  parser.add_argument("overrides", nargs="*", help="extra flags for experiments.main")
  args = parser.parse_args()
  modes = args.modes.split(",")

  print(f"# {args.config}, min (median) of {args.runs} runs; load before: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
  results = {m: [] for m in modes}
  with tempfile.TemporaryDirectory() as caches:
    for i in range(args.runs):
      cache = f"{caches}/cache{i}"  # cold: a new folder; warm: the same one again
      for mode in modes:
        value = {"cold": cache, "warm": cache, "off": "", "default": None}[mode]
        if mode == "warm" and "cold" not in modes and i == 0:
          run_once(args.config, value, args.overrides)  # fill it first
        results[mode].append(run_once(args.config, value, args.overrides))
  print(f"# load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

  def cell(mode: str, key: str) -> str:
    values = [r.get(key, 0.0) for r in results[mode]]
    return f"{min(values):6.2f} ({statistics.median(values):5.2f})"

  width = max(len(d) for _, d in PHASES) + 2
  print(f"{'phase (seconds)':<{width}}" + "".join(f"{m:>16}" for m in modes))
  for mark, description in PHASES:
    print(f"{description:<{width}}" + "".join(f"{cell(m, mark):>16}" for m in modes))
  print(f"{'= command to first step done':<{width}}"
        + "".join(f"{cell(m, 'total'):>16}" for m in modes))
  print("of which, summed over every compilation:")
  for key in ("compile:trace+lower", "compile:xla", "compile:cache read"):
    print(f"{'  ' + key[8:]:<{width}}" + "".join(f"{cell(m, key):>16}" for m in modes))
  for key in ("cache_hits", "cache_misses"):
    counts = ["/".join(str(int(r.get(key, 0))) for r in results[m]) for m in modes]
    print(f"{'  persistent ' + key.replace('_', ' '):<{width}}"
          + "".join(f"{c:>16}" for c in counts))

  print("\nimport experiments.main, self time per top-level package (python -X importtime):")
  packages = import_breakdown()
  for name, seconds in packages[:14]:
    print(f"  {name:<28}{seconds:6.3f}")
  rest = sum(s for _, s in packages[14:])
  print(f"  {'(all others)':<28}{rest:6.3f}")
  print(f"  {'total':<28}{sum(s for _, s in packages):6.3f}")


if __name__ == "__main__":
  main()
