"""The README's result tables equal what the committed results say."""

import importlib.util

from conftest import REPO


def _module():
  spec = importlib.util.spec_from_file_location(
      "readme_tables", REPO / "benchmarks" / "readme_tables.py"
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_readme_tables_match_the_committed_results():
  readme = (REPO / "README.md").read_text()
  assert _module().render(readme) == readme, (
      "README.md's result tables differ from benchmarks/results/: run "
      "`python benchmarks/readme_tables.py`"
  )


def test_the_check_catches_an_edited_figure():
  m = _module()
  readme = (REPO / "README.md").read_text()
  row = next(line for line in m.blocks()["table_digits"].splitlines() if line.startswith("| raw"))
  edited = readme.replace(row, row.replace("0.9", "0.8", 1))
  assert edited != readme and m.render(edited) == readme
