"""The README's set-up and test command: what CI runs, and what a new user types."""

import os
import re
import subprocess
import tomllib

from conftest import REPO


def readme_test_command() -> str:
  text = (REPO / "README.md").read_text()
  block = re.search(r"\*\*Set up and run the tests\*\*.*?```bash\n(.*?)\n```", text, re.S)
  assert block, "README.md lost its 'Set up and run the tests' command"
  return block.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
  command = readme_test_command()
  assert "\n" not in command
  ci = (REPO / ".ci" / "run").read_text().splitlines()
  assert command in ci  # the same line, character for character


def test_readme_test_command_stops_at_a_failed_step_and_shows_skip_reasons():
  command = readme_test_command()
  assert ";" not in command and "sudo" not in command  # `&&` stops; root or sudo is decided inside
  assert command.startswith("scripts/apt-install dataset-fashion-mnist && ")
  assert os.access(REPO / "scripts" / "apt-install", os.X_OK)
  pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
  assert "-rs" in pytest_options["ini_options"]["addopts"].split()


def test_apt_install_without_root_or_sudo_is_one_clear_error(tmp_path):
  (tmp_path / "id").write_text("#!/bin/sh\necho 1000\n")  # a user; no sudo on this PATH
  (tmp_path / "id").chmod(0o755)
  r = subprocess.run(["/bin/bash", str(REPO / "scripts" / "apt-install"), "dataset-fashion-mnist"],
                     env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=60)
  assert r.returncode == 2 and r.stdout == ""
  assert r.stderr.startswith("error: installing dataset-fashion-mnist needs root or sudo")
  assert r.stderr.count("\n") == 1
