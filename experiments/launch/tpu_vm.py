"""Run training on every host of a Cloud TPU VM slice with `gcloud ... ssh --worker=all`.

  python -m experiments.launch.tpu_vm --config=configs/resnet18_fashion_mnist.py \\
      --workdir=/mnt/shared/runs/r18 --tpu=my-v4 --zone=us-central2-b \\
      --accelerator_type=v4-32 [--create] [--dry_run]

Prints (`--dry_run`) or runs: optionally the slice creation, the set-up on all
workers (clone/fetch the repo, check out this checkout's commit, install with
`jax[tpu]`), and the training command on all workers at once. The hosts run
exactly the commit `git rev-parse HEAD` names, so it must be pushed to
`--repo_url` (default: this checkout's `origin`, which must be a URL the hosts can
reach, not a local path). A checkout with uncommitted changes is refused (the
hosts would run the code without them); `--dry_run` only warns. JAX finds the
other hosts of the slice itself (`jax.distributed.initialize()`); the workdir
must be on storage every host sees (e.g. a Filestore/NFS mount).
"""

from __future__ import annotations

import pathlib
import re
import shlex
import subprocess
import sys

from absl import flags
from ml_collections import config_flags

from cnn_jax.errors import ConfigError
from experiments import cli
from experiments.launch import common

REPO = pathlib.Path(__file__).resolve().parents[2]
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Workdir on storage shared by all hosts.")
flags.DEFINE_string("tpu", None, "TPU VM name.")
flags.DEFINE_string("zone", "us-central2-b", "Zone of the TPU VM.")
flags.DEFINE_string("project", None, "Google Cloud project (default: gcloud's).")
flags.DEFINE_string("accelerator_type", "v4-32", "Slice type, e.g. v4-32, v5p-64, v5litepod-16.")
flags.DEFINE_string("runtime_version", "tpu-ubuntu2204-base", "TPU VM software version.")
flags.DEFINE_string(
    "repo_url", None, "URL the hosts clone the code from (default: this checkout's origin)."
)
flags.DEFINE_bool("create", False, "Also create the slice.")
flags.DEFINE_bool("dry_run", False, "Print the commands; run nothing.")


def slice_shape(accelerator_type: str) -> tuple[int, int]:
  """(hosts, JAX devices) of a slice: v4-32 -> 16 chips on 4 hosts, one device per chip."""
  m = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)", accelerator_type)
  if not m:
    raise ConfigError(
        f"Unknown accelerator type {accelerator_type!r}; expected e.g. v3-32, v4-32, v5p-64, "
        "v5litepod-16, v6e-16."
    )
  family, n = m.group(1), int(m.group(2))
  if family in ("v2", "v3"):  # n TensorCores, 8 per host, each a JAX device
    return max(1, n // 8), n
  if family in ("v4", "v5p"):  # n TensorCores, 2 per chip (one device), 4 chips per host
    chips = n // 2
    return max(1, chips // 4), chips
  return (1 if n <= 8 else n // 4), n  # v5e / v6e: n chips, 4 per host in multi-host slices


def render_commands(
    *, config_path: str, workdir: str, overrides: list[str], tpu: str, zone: str,
    project: str | None, accelerator_type: str, runtime_version: str, repo_url: str,
    commit: str, create: bool,
) -> list[str]:
  hosts, devices = slice_shape(accelerator_type)
  where = [f"--zone={zone}"] + ([f"--project={project}"] if project else [])
  ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, *where, "--worker=all"]
  setup = (
      f"(git clone {shlex.quote(repo_url)} cnn_jax || git -C cnn_jax fetch origin) && cd cnn_jax"
      f" && git checkout --detach {commit} && "
      'python3 -m venv .venv && .venv/bin/pip install -e . "jax[tpu]"'
  )
  run = "cd cnn_jax && " + common.train_command(config_path, workdir, overrides, ".venv/bin/python")
  commands = [f"# {accelerator_type}: {hosts} hosts, {devices} devices"]
  if create:
    commands.append(" ".join([
        "gcloud", "compute", "tpus", "tpu-vm", "create", tpu, *where,
        f"--accelerator-type={accelerator_type}", f"--version={runtime_version}",
    ]))
  commands.append(" ".join([*ssh, f"--command={shlex.quote(setup)}"]))
  commands.append(" ".join([*ssh, f"--command={shlex.quote(run)}"]))
  return commands


def _git(repo: pathlib.Path, *args: str) -> str | None:
  r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
  return r.stdout.strip() if r.returncode == 0 else None


def is_local_path(url: str) -> bool:
  """Git's rule: a URL has `://`, or is `host:path` with no `/` before the first `:`."""
  if url.startswith("file:"):
    return True
  if "://" in url:
    return False
  return ":" not in url or "/" in url.split(":", 1)[0]


def repo_url_for_hosts(repo: pathlib.Path, repo_url: str | None) -> str:
  """`repo_url`, or the checkout's origin; a local path (that the hosts lack) is an error."""
  url = repo_url or _git(repo, "remote", "get-url", "origin")
  given = "--repo_url" if repo_url else "this checkout's origin"
  if not url:
    cli.fail("this checkout has no git remote 'origin'; pass --repo_url=URL the TPU hosts can "
             "clone (e.g. https://github.com/you/cnn_jax.git).")
  if is_local_path(url):
    cli.fail(f"{given} is a local path ({url}), which the TPU hosts cannot clone; pass "
             "--repo_url=URL they can reach (e.g. https://github.com/you/cnn_jax.git) and push "
             "this commit there.")
  return url


def pinned_commit(repo: pathlib.Path, *, dry_run: bool) -> str:
  """The checkout's commit; uncommitted changes are refused (a dry run warns)."""
  commit = _git(repo, "rev-parse", "HEAD")
  if not commit:
    cli.fail(f"{repo} is not a git checkout with a commit; the TPU hosts check out a commit.")
  dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
  if dirty:
    n = len(dirty.splitlines())
    message = (f"the checkout has uncommitted changes in {n} file{'s' * (n != 1)}; the TPU "
               f"hosts would run commit {commit[:12]} without them. Commit and push them first.")
    if not dry_run:
      cli.fail(message)
    print(f"warning: {message}", file=sys.stderr)
  return commit


def main(argv):
  del argv
  _, devices = slice_shape(FLAGS.accelerator_type)
  common.check_devices(FLAGS.config, devices)
  repo_url = repo_url_for_hosts(REPO, FLAGS.repo_url)
  commit = pinned_commit(REPO, dry_run=FLAGS.dry_run)
  commands = render_commands(
      config_path=config_flags.get_config_filename(FLAGS["config"]), workdir=FLAGS.workdir,
      overrides=common.config_overrides(sys.argv), tpu=FLAGS.tpu, zone=FLAGS.zone,
      project=FLAGS.project, accelerator_type=FLAGS.accelerator_type,
      runtime_version=FLAGS.runtime_version, repo_url=repo_url, commit=commit,
      create=FLAGS.create,
  )
  if FLAGS.dry_run:
    print("\n".join(commands))
    return
  for command in commands[1:]:
    subprocess.run(command, shell=True, check=True)


if __name__ == "__main__":
  cli.run(main, required=("config", "workdir", "tpu"))
