"""The package's import graph points one way: lower layers never import higher ones.

errors/registry/console/startup < data, layers < anchors, models < run < features, visualize, shift
< probe < train < benchmark. In particular nothing below the training loop imports
`cnn_jax.train` (a trained model is read through `cnn_jax.run.Run`).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "cnn_jax"
RANK = {
    "errors": 0, "registry": 0, "console": 0, "backprop_reference": 0, "startup": 0,
    "data": 1, "layers": 1,
    "anchors": 2, "models": 2,
    "run": 3,
    "features": 4, "visualize": 4, "shift": 4,
    "probe": 5,
    "train": 6,
    "benchmark": 7,
}


def _part(module: str) -> str:
  return module.split(".")[1]


def _imports(path: pathlib.Path) -> set[str]:
  """Every `cnn_jax.<part>` module the file imports, at the top or inside functions."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnn_jax."):
      found.add(node.module)
    elif isinstance(node, ast.ImportFrom) and node.module == "cnn_jax":
      found.update(f"cnn_jax.{a.name}" for a in node.names)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith("cnn_jax."))
  return found


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem != "__init__")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_points_up(path):
  rel = path.relative_to(PACKAGE)
  own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
  assert own in RANK, f"{rel}: add its package part to RANK"
  up = sorted(m for m in _imports(path) if RANK[_part(m)] > RANK[own])
  assert not up, f"{rel} (layer {own}) imports higher layers: {up}"


def test_the_check_would_catch_an_import_of_the_train_loop(tmp_path):
  bad = tmp_path / "cnn.py"
  bad.write_text("def f():\n  from cnn_jax.train.loop import setup\n")
  assert RANK[_part(next(iter(_imports(bad))))] > RANK["features"]
