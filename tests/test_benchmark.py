"""The experiment registry and the reproducible benchmark tables."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from bench_tiny import SUITE, register
from conftest import REPO, built_once, subprocess_env

from cnn_jax import benchmark, data
from cnn_jax.benchmark import tables
from cnn_jax.errors import ConfigError

register()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> pathlib.Path:
  return built_once(tmp_path_factory, "suite_a",
                    lambda workdir: benchmark.run_suite(SUITE, "digits", 2, workdir))


def test_suite_writes_results_tables_and_plots(first_run):
  records = [json.loads(line) for line in (first_run / "results.jsonl").read_text().splitlines()]
  # raw and hog are seed-independent (run once); the rest run for seeds 0 and 1.
  assert [(r["experiment"], r["seed"]) for r in records] == [
      ("raw", 0), ("hog", 0), ("random_conv", 0), ("random_conv", 1), ("tiny_lenet5", 0),
      ("tiny_lenet5", 1), ("tiny_lenet5_frozen", 0), ("tiny_lenet5_frozen", 1),
  ]
  table = benchmark.load_table(first_run)
  rows = {r["experiment"]: r for r in table["rows"]}
  lenet = [r for r in records if r["experiment"] == "tiny_lenet5"]
  accs = [r["test_accuracy"] for r in lenet]
  assert rows["tiny_lenet5"]["test_accuracy_mean"] == pytest.approx(np.mean(accs))
  assert rows["tiny_lenet5"]["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
  assert rows["tiny_lenet5"]["size"] == 61_706 and rows["tiny_lenet5"]["size_unit"] == "params"
  assert rows["hog"]["size_unit"] == "features" and rows["raw"]["size"] == 64
  assert rows["raw"]["anchor_accuracy"] == 0.939  # scaler + LogisticRegression on digits
  assert rows["tiny_lenet5"]["test_accuracy_mean"] > 0.5 and rows["raw"]["test_accuracy_mean"] > 0.9
  prov = table["provenance"]
  assert len(prov["git_commit"]) == 40 and prov["device_count"] >= 1 and prov["seeds"] == [0, 1]
  assert set(prov["config_hashes"]) == {f"{r['experiment']}/seed_{r['seed']}" for r in records}
  md = (first_run / "table.md").read_text()
  assert "| tiny_lenet5 | LeNet-5, 3 epochs | learned | 61,706 params |" in md
  assert "1 (seed-independent)" in md and "## Provenance" in md
  csv_lines = (first_run / "table.csv").read_text().splitlines()
  assert csv_lines[0].startswith("experiment,representation,kind,size") and len(csv_lines) == 6
  for png in ("accuracy_vs_time.png", "learning_curves.png"):
    assert (first_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_run_from_scratch_gives_the_same_table(first_run, tmp_path):
  benchmark.run_suite(SUITE, "digits", 2, tmp_path)
  a = tables.strip_timing((first_run / "table.md").read_text())
  b = tables.strip_timing((tmp_path / "table.md").read_text())
  assert a == b
  assert "created:" not in a and "0." in a


def _result_files(workdir: pathlib.Path) -> dict[str, tuple[bytes, int]]:
  return {
      str(p.relative_to(workdir)): (p.read_bytes(), p.stat().st_mtime_ns)
      for p in workdir.glob("runs/*/seed_*/result.json")
  }


def test_killed_suite_resumes_without_redoing_finished_runs(first_run, tmp_path):
  workdir = tmp_path / "killed"
  script = [sys.executable, str(REPO / "tests" / "bench_tiny.py"), str(workdir)]
  env = subprocess_env(REPO, REPO / "tests")
  proc = subprocess.Popen(script, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  train_dir = workdir / "runs" / "tiny_lenet5" / "seed_0" / "train"
  while not (train_dir / "checkpoints").exists() or not any(
      p.name.isdigit() for p in (train_dir / "checkpoints").iterdir()
  ):  # killed during the first training run, after a checkpoint
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    assert time.time() < deadline
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = _result_files(workdir)
  assert len(done) == 4  # raw, hog, random_conv x2
  r = subprocess.run(script, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stderr.count("done before, skipped") == 4
  assert "Resuming from checkpoint" in r.stderr  # the interrupted training picks up
  after = _result_files(workdir)
  assert {k: after[k] for k in done} == done  # finished runs untouched
  assert len(after) == 8
  assert tables.strip_timing((workdir / "table.md").read_text()) == tables.strip_timing(
      (first_run / "table.md").read_text()
  )


def test_unknown_suite_and_dataset_list_valid_ones(tmp_path):
  with pytest.raises(ConfigError, match="Unknown suite 'feature_vs_learned'. Valid suites: .*features_vs_learned"):
    benchmark.run_suite("feature_vs_learned", "digits", 1, tmp_path)
  with pytest.raises(ConfigError, match="Unknown data set 'cifar'. Known data sets: cifar10, digits, fashion_mnist, mnist"):
    benchmark.run_suite("features_vs_learned", "cifar", 1, tmp_path)
  r = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--suite=nope", f"--workdir={tmp_path / 'x'}"],
      cwd=REPO, capture_output=True, text=True, timeout=120,
  )
  assert r.returncode == 2 and "error: Unknown suite 'nope'. Valid suites:" in r.stderr


def test_list_shows_experiments_and_suites():
  r = subprocess.run([sys.executable, "-m", "experiments.benchmark", "--list"], cwd=REPO,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0
  assert "features_vs_learned" in r.stdout and "hog_svm" in r.stdout and "lenet5_frozen" in r.stdout


def test_anchor_and_formatting_for_fashion_mnist():
  exps = benchmark.suite("features_vs_learned")
  records = [
      {"experiment": "hog_svm", "seed": 0, "test_accuracy": 0.92, "train_accuracy": 1.0,
       "size": 1296, "size_unit": "features", "time_s": 1.0},
      *[{"experiment": "simple_cnn", "seed": s, "test_accuracy": a, "train_accuracy": 1.0,
         "size": 421642, "size_unit": "params", "time_s": 2.0} for s, a in ((0, 0.91), (1, 0.93))],
  ]
  prov = {"git_commit": "x", "git_dirty": False, "device_count": 1, "device_kind": "cpu",
          "platform": "cpu", "seeds": [0, 1], "python": "3", "packages": {}, "config_hashes": {},
          "created": "t"}
  info = data.DATASETS.get("fashion_mnist")
  md = tables.render_markdown(tables.build_table("s", info, exps, records, prov))
  assert "| hog_svm | HOG + RBF SVM (C=10; <= 20k train) | engineered | 1,296 features | 1.0 | 0.9200 | 1 (seed-independent) | 0.926 (HOG + SVM) |" in md
  assert "| 0.9200 ± 0.0141 | 2 | 0.916 (2 conv + pooling (TensorFlow tutorial)) |" in md


def test_unprepared_tfds_data_set_names_the_benchmark_flag_and_leaves_no_workdir(tmp_path):
  env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "empty_tfds"))
  workdir = tmp_path / "suite"
  r = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--dataset=mnist", f"--workdir={workdir}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
  )
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert "TFDS data set 'mnist' is not prepared" in r.stderr
  assert "--download (experiments.benchmark" in r.stderr  # a flag this CLI has
  assert not workdir.exists()


def test_rows_computed_by_other_code_are_named_in_the_provenance(first_run, tmp_path):
  import shutil

  workdir = tmp_path / "copy"
  shutil.copytree(first_run, workdir)
  assert "carried over" not in (workdir / "table.md").read_text()  # one invocation, one commit
  path = workdir / "runs" / "raw" / "seed_0" / "result.json"
  record = json.loads(path.read_text())
  assert len(record["git_commit"]) == 40
  path.write_text(json.dumps({**record, "git_commit": "0" * 40, "git_dirty": True}))
  benchmark.run_suite(SUITE, "digits", 2, workdir)  # every run is skipped: all done before
  md = (workdir / "table.md").read_text()
  assert ("- computed by other code and carried over: raw/seed_0 at 000000000000 "
          "(uncommitted changes)") in md


def test_a_record_without_a_commit_is_named_as_such_not_truncated():
  prov = {"git_commit": "a" * 40, "git_dirty": False}
  records = [{"experiment": "hog", "seed": 0}, {"experiment": "raw", "seed": 1, "git_commit": "b" * 40}]
  assert tables.carried_over(records, prov) == [
      "hog/seed_0 at an unrecorded commit", "raw/seed_1 at " + "b" * 12]


def test_committed_results_hash_to_todays_configs():
  """Every committed suite record's config hash is the one today's registry gives for the
  same (experiment, data set, seed): fields added since are hash-neutral at their default,
  so a resumed suite does not recompute finished runs (and a changed recipe is noticed)."""
  from cnn_jax.benchmark.provenance import config_hash

  records = [
      json.loads(line)
      for path in sorted((REPO / "benchmarks" / "results").glob("*/results.jsonl"))
      for line in path.read_text().splitlines()
  ]
  assert len(records) >= 20
  for r in records:
    assert config_hash(r["config"]) == r["config_hash"], r["experiment"]
    now = benchmark.EXPERIMENTS.get(r["experiment"]).config(r["dataset"], r["seed"])
    assert config_hash(now) == r["config_hash"], (r["dataset"], r["experiment"], r["seed"])


def test_a_field_at_its_hash_neutral_default_leaves_the_hash_unchanged(monkeypatch):
  from cnn_jax.benchmark import provenance

  config = {"train": {"seed": 0, "new_field": 1}}
  before = provenance.config_hash(config)
  monkeypatch.setitem(provenance.HASH_NEUTRAL_DEFAULTS, "train.new_field", 1)
  assert provenance.config_hash(config) == provenance.config_hash({"train": {"seed": 0}})
  assert provenance.config_hash(config) != before
  assert provenance.config_hash({"train": {"seed": 0, "new_field": 2}}) != provenance.config_hash(config)


def test_report_only_tables_the_finished_runs_and_names_the_rest(first_run, tmp_path):
  import shutil

  workdir = tmp_path / "partial"
  shutil.copytree(first_run, workdir)
  shutil.rmtree(workdir / "runs" / "tiny_lenet5_frozen" / "seed_1")
  before = sorted(p.relative_to(workdir) for p in (workdir / "runs").rglob("*"))
  benchmark.run_suite(SUITE, "digits", 2, workdir, report_only=True)
  assert sorted(p.relative_to(workdir) for p in (workdir / "runs").rglob("*")) == before
  table = benchmark.load_table(workdir)
  rows = {r["experiment"]: r for r in table["rows"]}
  assert rows["tiny_lenet5_frozen"]["seeds"] == [0] and rows["tiny_lenet5"]["seeds"] == [0, 1]
  assert table["provenance"]["not_run"] == ["tiny_lenet5_frozen/seed_1"]
  md = (workdir / "table.md").read_text()
  assert "- not run (the table reports the finished runs only): tiny_lenet5_frozen/seed_1" in md


def test_a_row_meant_for_other_data_sets_is_left_out_of_the_table(tmp_path):
  """The speed run's recipe (batch 512 of 28x28 images) is not run on the 8x8 digits: the
  main job's suite there has no such row, not even as "not run"; on Fashion-MNIST it has."""
  speedrun = benchmark.EXPERIMENTS.get("speedrun")
  assert speedrun.runs_on("fashion_mnist") and not speedrun.runs_on("digits")
  workdir = tmp_path / "fvl_digits"
  benchmark.run_suite("features_vs_learned", "digits", 1, workdir, report_only=True)
  table = benchmark.load_table(workdir)
  assert "speedrun" not in {r["experiment"] for r in table["rows"]}
  assert not any(n.startswith("speedrun/") for n in table["provenance"]["not_run"])
  assert any(n.startswith("lenet5/") for n in table["provenance"]["not_run"])  # the rest stay


def test_only_runs_the_named_rows_and_what_they_need(first_run, tmp_path):
  """`only=` runs the named experiments (and the runs they read), tabling the others'
  finished runs: here nothing is finished but the wanted row's needs."""
  workdir = tmp_path / "only"
  with pytest.raises(ConfigError, match="--only names hog_svm, not in suite"):
    benchmark.run_suite(SUITE, "digits", 1, workdir, only=["hog_svm"])
  benchmark.run_suite(SUITE, "digits", 1, workdir, only=["tiny_lenet5_frozen"])
  table = benchmark.load_table(workdir)
  assert {r["experiment"] for r in table["rows"]} == {"tiny_lenet5", "tiny_lenet5_frozen"}
  assert sorted(table["provenance"]["not_run"]) == ["hog/seed_0", "random_conv/seed_0", "raw/seed_0"]
  assert sorted(p.name for p in (workdir / "runs").iterdir()) == ["tiny_lenet5", "tiny_lenet5_frozen"]
  ours = json.loads((first_run / "runs" / "tiny_lenet5" / "seed_0" / "result.json").read_text())
  theirs = json.loads((workdir / "runs" / "tiny_lenet5" / "seed_0" / "result.json").read_text())
  assert theirs["test_accuracy"] == ours["test_accuracy"]  # the same run as in the whole suite


def test_a_row_computed_on_another_device_says_so(first_run, tmp_path):
  """A record carried in from another machine (a GPU-only row in a CPU table) keeps its
  device: the time cell, the CSV, the plot label and the provenance name it."""
  import shutil

  here = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  other = "1 x NVIDIA H200" if here != "1 x NVIDIA H200" else "8 x TPU v5 lite"  # not this one
  workdir = tmp_path / "mixed"
  shutil.copytree(first_run, workdir)
  for seed in (0, 1):
    path = workdir / "runs" / "tiny_lenet5" / f"seed_{seed}" / "result.json"
    record = json.loads(path.read_text())
    assert record["device"] == here
    path.write_text(json.dumps({**record, "device": other}))
  benchmark.run_suite(SUITE, "digits", 2, workdir, report_only=True)
  table = benchmark.load_table(workdir)
  rows = {r["experiment"]: r for r in table["rows"]}
  assert rows["tiny_lenet5"]["device"] == other and "device" not in rows["raw"]
  md = (workdir / "table.md").read_text()
  assert f"({other}) |" in md.split("| tiny_lenet5 |")[1].splitlines()[0]
  assert ("- computed on another device (its time is that device's): tiny_lenet5/seed_0 on "
          f"{other}, tiny_lenet5/seed_1 on {other}") in md
  csv = (workdir / "table.csv").read_text().splitlines()
  assert csv[0].split(",")[-1] == "device"
  assert other in next(line for line in csv if line.startswith("tiny_lenet5,"))
