"""Submit a multi-node GPU training job to SLURM (one process per node, all its GPUs).

  python -m experiments.launch.slurm --config=configs/resnet18_fashion_mnist.py \\
      --workdir=/shared/runs/r18 --nodes=2 --gpus_per_node=8 [--config.batch_size=512] [--dry_run]

Writes `WORKDIR/launch/job.sbatch` and runs `sbatch` on it; `--dry_run` prints
the script and the command instead. The workdir must be on a file system every
node sees. JAX reads the node list, task count and rank from SLURM's
environment (`jax.distributed.initialize()`), so the script needs no addresses.
"""

from __future__ import annotations

import pathlib
import shlex
import subprocess
import sys

from absl import flags
from ml_collections import config_flags

from experiments import cli
from experiments.launch import common

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Shared workdir of the run.")
flags.DEFINE_integer("nodes", 2, "Number of nodes.")
flags.DEFINE_integer("gpus_per_node", 8, "GPUs per node.")
flags.DEFINE_integer("cpus_per_node", 32, "CPU cores per node (data loading, compilation).")
flags.DEFINE_string("partition", None, "SLURM partition.")
flags.DEFINE_string("time", "24:00:00", "Wall-clock limit.")
flags.DEFINE_string("job_name", "cnn_jax", "Job name.")
flags.DEFINE_string("setup", "source .venv/bin/activate", "Shell line run on each node first.")
flags.DEFINE_bool("dry_run", False, "Print the script and the sbatch command; submit nothing.")


def render_sbatch(
    *, config_path: str, workdir: str, overrides: list[str], nodes: int, gpus_per_node: int,
    cpus_per_node: int, partition: str | None, time: str, job_name: str, setup: str,
    repo: str,
) -> str:
  lines = [
      "#!/bin/bash",
      f"#SBATCH --job-name={job_name}",
      f"#SBATCH --nodes={nodes}",
      "#SBATCH --ntasks-per-node=1",
      f"#SBATCH --gpus-per-node={gpus_per_node}",
      f"#SBATCH --cpus-per-task={cpus_per_node}",
      f"#SBATCH --time={time}",
      f"#SBATCH --output={workdir}/launch/slurm-%j.out",
      "#SBATCH --signal=TERM@120",  # preemption warning: the run checkpoints and exits
      "#SBATCH --requeue",
  ]
  if partition:
    lines.append(f"#SBATCH --partition={partition}")
  lines += [
      "set -euo pipefail",
      f"cd {shlex.quote(repo)}",
      setup,
      f"# {nodes} nodes x {gpus_per_node} GPUs = {nodes * gpus_per_node} devices",
      "srun --kill-on-bad-exit=1 " + common.train_command(config_path, workdir, overrides),
  ]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  overrides = common.config_overrides(sys.argv)
  common.check_devices(FLAGS.config, FLAGS.nodes * FLAGS.gpus_per_node)
  script = render_sbatch(
      config_path=config_flags.get_config_filename(FLAGS["config"]),
      workdir=FLAGS.workdir, overrides=overrides, nodes=FLAGS.nodes,
      gpus_per_node=FLAGS.gpus_per_node, cpus_per_node=FLAGS.cpus_per_node,
      partition=FLAGS.partition, time=FLAGS.time, job_name=FLAGS.job_name, setup=FLAGS.setup,
      repo=str(pathlib.Path(__file__).resolve().parents[2]),
  )
  path = pathlib.Path(FLAGS.workdir) / "launch" / "job.sbatch"
  if FLAGS.dry_run:
    print(f"# {path}\n{script}\n# submit with:\nsbatch {path}")
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(script)
  subprocess.run(["sbatch", str(path)], check=True)


if __name__ == "__main__":
  cli.run(main, required=("config", "workdir"))
