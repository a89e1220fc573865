"""Run a suite of experiments and print its table.

  python -m experiments.benchmark                       # features_vs_learned on digits, 3 seeds
  python -m experiments.benchmark --suite=features_vs_learned --dataset=fashion_mnist \\
      --seeds=3 --workdir=workdirs/fvl_fashion_mnist
  python -m experiments.benchmark --list
  python -m experiments.benchmark --visualize   # also: each trained run's pictures

`--visualize` writes `python -m experiments.visualize`'s pictures of every trained
run into its `runs/<experiment>/seed_<s>/train/visualize/` (the tables do not change).

Rerunning the same command resumes: finished (experiment, seed) runs are skipped.
"""

import pathlib

from absl import flags

from cnn_jax import benchmark
from cnn_jax.data import DATASETS
from experiments import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("suite", "features_vs_learned", "Suite to run (see --list).")
flags.DEFINE_string("dataset", "digits", "Data set: " + ", ".join(DATASETS.names()) + ".")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0 .. seeds-1).")
flags.DEFINE_string("workdir", None, "Output folder (default: workdirs/<suite>_<dataset>).")
flags.DEFINE_string("data_dir", None, "Where raw data files are looked for.")
flags.DEFINE_string("tfds_dir", None, "TFDS data dir for prepared data sets.")
flags.DEFINE_bool("download", False, "Let TFDS download and prepare a data set (needs network).")
flags.DEFINE_bool("list", False, "List experiments and suites, then exit.")
flags.DEFINE_bool("report_only", False, "Run nothing: write the tables from the finished "
                  "runs in --workdir, naming the unfinished ones in the provenance.")
flags.DEFINE_list("only", [], "Run only these experiments of the suite (and what they need); "
                  "table the others' finished runs, as --report_only does.")
flags.DEFINE_bool("visualize", False, "Also write each trained run's pictures (top patches, "
                  "filters, feature maps) into runs/<exp>/seed_<s>/train/visualize/.")


def list_registry() -> str:
  lines = ["Experiments:"]
  names = benchmark.EXPERIMENTS.names()
  width = max(map(len, names))
  for name in names:
    e = benchmark.EXPERIMENTS.get(name)
    lines.append(f"  {name:<{width}} {e.kind:<12} {e.runner:<8} {e.representation}")
  lines.append("Suites:")
  width = max(map(len, benchmark.SUITES))
  for name, members in sorted(benchmark.SUITES.items()):
    lines.append(f"  {name:<{width}} {', '.join(members)}")
  lines.append(f"Data sets: {', '.join(DATASETS.names())}")
  return "\n".join(lines)


def main(argv):
  del argv
  if FLAGS.list:
    print(list_registry())
    return
  workdir = FLAGS.workdir or f"workdirs/{FLAGS.suite}_{FLAGS.dataset}"
  benchmark.run_suite(
      FLAGS.suite, FLAGS.dataset, FLAGS.seeds, workdir,
      data_dir=FLAGS.data_dir, tfds_dir=FLAGS.tfds_dir, download=FLAGS.download,
      visualize=FLAGS.visualize, report_only=FLAGS.report_only, only=FLAGS.only,
  )
  print((pathlib.Path(workdir) / "table.md").read_text())
  print(f"Tables, results.jsonl and plots are in {workdir}/")


if __name__ == "__main__":
  cli.run(main, progress="/cnn_jax/benchmark/")
