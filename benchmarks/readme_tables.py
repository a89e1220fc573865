"""The README's result tables, generated from the committed results (so they cannot drift).

  python benchmarks/readme_tables.py          # rewrite the tables in README.md
  python benchmarks/readme_tables.py --check  # exit 1 if README.md differs from the results

Each table sits between `<!-- begin NAME -->` and `<!-- end NAME -->` in README.md
and is rebuilt from `benchmarks/results/<suite dir>/table.json` and `results.jsonl`.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SUITES = {
    "digits": "features_vs_learned_digits",
    "fashion_mnist": "features_vs_learned_fashion_mnist",
}


def _records(folder: str) -> list[dict]:
  lines = (RESULTS / folder / "results.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines if line.strip()]


def _accuracy(row: dict) -> str:
  acc = f"{row['test_accuracy_mean']:.4f}"
  return acc + (f" ± {row['test_accuracy_std']:.4f}" if len(row["seeds"]) > 1 else "")


def suite_table(folder: str) -> str:
  """The suite's rows: experiment, kind, size, time, test accuracy, seeds, published."""
  table = json.loads((RESULTS / folder / "table.json").read_text())
  epochs = {
      r["experiment"]: r["config"]["train"]["num_epochs"]
      for r in _records(folder) if "train" in r["config"]
  }
  lines = [
      "| experiment | kind | size | time (s) | test accuracy | seeds | published |",
      "|---|---|---|---|---|---|---|",
  ]
  for row in table["rows"]:
    name = row["experiment"]
    if name in epochs:
      name += f" ({epochs[name]} epochs)"
    seeds = "1 (seed-independent)" if row["seed_independent"] else str(len(row["seeds"]))
    published = (
        f"{row['anchor_accuracy']:.3f} ({row['anchor']})" if row.get("anchor") else "—"
    )
    lines.append(
        f"| {name} | {row['kind']} | {row['size']:,} {row['size_unit']} | {row['time_s']:.1f} | "
        f"{_accuracy(row)} | {seeds} | {published} |"
    )
  return "\n".join(lines)


def single_runs() -> str:
  """Per-seed results of the suites' trained rows, named by the config file they ran."""
  sys.path.insert(0, str(REPO))
  from cnn_jax.benchmark import EXPERIMENTS

  lines = [
      "| config | test accuracy (seed 0 / 1 / 2) | training time (s) |",
      "|---|---|---|",
  ]
  for dataset, folder in SUITES.items():
    by_name: dict[str, list[dict]] = {}
    for r in _records(folder):
      if "train" in r["config"]:
        by_name.setdefault(r["experiment"], []).append(r)
    for name, runs in by_name.items():
      runs.sort(key=lambda r: r["seed"])
      recipe = EXPERIMENTS.get(name).recipe.format(dataset=dataset)
      accs = " / ".join(f"{r['test_accuracy']:.4f}" for r in runs)
      low, high = (f"{t:.0f}" for t in (min(r["time_s"] for r in runs),
                                           max(r["time_s"] for r in runs)))
      lines.append(
          f"| `{recipe}` ({runs[0]['config']['train']['num_epochs']} epochs) | {accs} | "
          f"{low if low == high else f'{low}–{high}'} |"
      )
  return "\n".join(lines)


def parameter_sharing(folder: str = "parameter_sharing_fashion_mnist") -> str:
  """Parameters, time, test accuracy and accuracy on shifted test images per connectivity."""
  table = json.loads((RESULTS / folder / "table.json").read_text())
  shifts = sorted({p for r in table["rows"] for p in r.get("shifted_accuracy_mean", {})}, key=int)
  lines = [
      "| experiment | parameters | time (s) | test accuracy | "
      + " | ".join(f"shifted {p} px" for p in shifts) + " | seeds |",
      "|---|---|---|---|" + "---|" * len(shifts) + "---|",
  ]
  for row in table["rows"]:
    shifted = " | ".join(f"{row['shifted_accuracy_mean'][p]:.4f}" for p in shifts)
    lines.append(
        f"| {row['experiment']} | {row['size']:,} | {row['time_s']:.0f} | {_accuracy(row)} | "
        f"{shifted} | {len(row['seeds'])} |"
    )
  return "\n".join(lines)


def layerwise_pretraining(folder: str = "layerwise_pretraining_fashion_mnist") -> str:
  """Test accuracy against the number of labels, per network and initialisation."""
  sys.path.insert(0, str(REPO))
  from cnn_jax.benchmark.tables import by_labels

  sizes, groups = by_labels(json.loads((RESULTS / folder / "table.json").read_text()))
  lines = [
      "| network: initialisation | " + " | ".join(f"{n:,} labels" for n in sizes) + " |",
      "|---|" + "---|" * len(sizes),
  ]
  for group, rows in groups.items():
    cells = []
    for n in sizes:
      row = rows.get(n)
      cells.append(
          "—" if row is None else _accuracy(row) + ("" if len(row["seeds"]) > 1 else " (1 seed)")
      )
    lines.append(f"| {group} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def blocks() -> dict[str, str]:
  out = {
      "table_digits": suite_table(SUITES["digits"]),
      "table_fashion_mnist": suite_table(SUITES["fashion_mnist"]),
      "single_runs": single_runs(),
  }
  # The newer suites' tables, once their results are committed.
  if (RESULTS / "parameter_sharing_fashion_mnist").is_dir():
    out["parameter_sharing"] = parameter_sharing()
  if (RESULTS / "layerwise_pretraining_fashion_mnist").is_dir():
    out["layerwise_pretraining"] = layerwise_pretraining()
  return out


def render(readme: str) -> str:
  for name, text in blocks().items():
    pattern = re.compile(rf"(<!-- begin {name} -->\n).*?(<!-- end {name} -->)", re.S)
    if not pattern.search(readme):
      raise SystemExit(f"README.md has no <!-- begin {name} --> ... <!-- end {name} --> block.")
    readme = pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), readme)
  return readme


def main(argv: list[str]) -> int:
  path = REPO / "README.md"
  old = path.read_text()
  new = render(old)
  if "--check" in argv:
    if new != old:
      print("README.md's result tables differ from benchmarks/results/; run "
            "`python benchmarks/readme_tables.py`.", file=sys.stderr)
      return 1
    return 0
  path.write_text(new)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
