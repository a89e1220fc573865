"""Aggregate per-seed results into a table: markdown, CSV and JSON, with provenance."""

from __future__ import annotations

import csv
import io
import json
import pathlib
from typing import Any

import numpy as np

from cnn_jax.benchmark.registry import Experiment
from cnn_jax.data.datasets import DatasetInfo
from cnn_jax.run import write_json_atomic, write_text_atomic

# Columns that hold wall-clock measurements (they vary run to run; all else is reproducible).
TIMING_COLUMNS = ("time (s)",)
COLUMNS = (
    "experiment", "representation", "kind", "size", "time (s)", "test accuracy", "seeds",
    "published",
)


def build_table(
    suite: str, dataset: DatasetInfo, experiments: list[Experiment],
    records: list[dict[str, Any]], prov: dict[str, Any],
) -> dict[str, Any]:
  rows, pretraining = [], []
  for exp in experiments:
    rs = sorted((r for r in records if r["experiment"] == exp.name), key=lambda r: r["seed"])
    if not rs:
      continue
    if exp.runner == "pretrain":
      pretraining.append(_pretraining_row(exp, rs))
      continue
    acc = np.array([r["test_accuracy"] for r in rs])
    anchor = dataset.anchors.get(exp.method)
    rows.append({
        "experiment": exp.name,
        "representation": exp.representation,
        "kind": exp.kind,
        "size": int(rs[0]["size"]),
        "size_unit": rs[0]["size_unit"],
        "time_s": float(np.mean([r["time_s"] for r in rs])),
        "test_accuracy_mean": float(acc.mean()),
        "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "train_accuracy_mean": float(np.mean([r["train_accuracy"] for r in rs])),
        "seeds": [r["seed"] for r in rs],
        "seed_independent": not exp.uses_seed,
        "anchor": anchor[0] if anchor else None,
        "anchor_accuracy": anchor[1] if anchor else None,
        **({"labels": exp.labels, "group": exp.group} if exp.group else {}),
        **_shifted_means(rs),
        **({"device": other} if (other := _other_device(rs, prov)) else {}),
    })
  return {
      "suite": suite, "dataset": dataset.name, "note": dataset.note, "rows": rows,
      **({"pretraining": pretraining} if pretraining else {}),
      "provenance": {**prov, "carried_over": carried_over(records, prov),
                     "other_devices": other_devices(records, prov)},
  }


def device_of(count: int, kind: str) -> str:
  """"N x KIND": the devices a record (`device`) or a table (provenance) was computed on."""
  return f"{count} x {kind}"


def _elsewhere(records: list[dict[str, Any]], prov: dict[str, Any]) -> list[dict[str, Any]]:
  """The records computed on other devices than the table's (records from before devices
  were recorded count as the table's)."""
  here = device_of(prov["device_count"], prov["device_kind"])
  return [r for r in records if r.get("device", here) != here]


def _other_device(records: list[dict[str, Any]], prov: dict[str, Any]) -> str | None:
  """The device(s) a row's records were computed on when not the table's, else None."""
  return ", ".join(sorted({r["device"] for r in _elsewhere(records, prov)})) or None


def other_devices(records: list[dict[str, Any]], prov: dict[str, Any]) -> list[str]:
  """ "experiment/seed_s on DEVICE" for every record computed on another device than the
  table's (e.g. a GPU-only row carried into a CPU table)."""
  return [f"{r['experiment']}/seed_{r['seed']} on {r['device']}" for r in _elsewhere(records, prov)]


def _pretraining_row(exp: Experiment, records: list[dict[str, Any]]) -> dict[str, Any]:
  """Each pre-trained layer's held-out reconstruction loss before and after (seed means)."""
  layers = [
      {
          "layer": layer["layer"],
          "loss_before": float(np.mean([r["layers"][i]["held_out_loss_before"] for r in records])),
          "loss_after": float(np.mean([r["layers"][i]["held_out_loss_after"] for r in records])),
          "epochs": layer["epochs"],
      }
      for i, layer in enumerate(records[0]["layers"])
  ]
  return {
      "experiment": exp.name, "representation": exp.representation, "layers": layers,
      "time_s": float(np.mean([r["time_s"] for r in records])),
      "seeds": [r["seed"] for r in records],
  }


def by_labels(table: dict[str, Any]) -> tuple[list[int], dict[str, dict[int, dict[str, Any]]]]:
  """(labelled-set sizes, group -> size -> row) of the rows that belong to a group."""
  groups: dict[str, dict[int, dict[str, Any]]] = {}
  for row in table["rows"]:
    if row.get("group"):
      groups.setdefault(row["group"], {})[row["labels"]] = row
  return sorted({n for g in groups.values() for n in g}), groups


def _labels_markdown(table: dict[str, Any]) -> list[str]:
  sizes, groups = by_labels(table)
  if not groups:
    return []
  lines = [
      "",
      "## Test accuracy against the number of labelled training examples",
      "",
      "| method | " + " | ".join(f"{n:,} labels" for n in sizes) + " |",
      "|---|" + "|".join("---" for _ in sizes) + "|",
  ]
  for group, rows in groups.items():
    cells = [_cells(rows[n])["test accuracy"] if n in rows else "—" for n in sizes]
    lines.append(f"| {group} | " + " | ".join(cells) + " |")
  return lines


def _pretraining_markdown(table: dict[str, Any]) -> list[str]:
  if not table.get("pretraining"):
    return []
  lines = [
      "",
      "## Greedy layer-wise pre-training (denoising autoencoders, no labels)",
      "",
      "| experiment | layer | epochs | held-out reconstruction loss before | after |",
      "|---|---|---|---|---|",
  ]
  for row in table["pretraining"]:
    for layer in row["layers"]:
      lines.append(
          f"| {row['experiment']} | {layer['layer']} | {layer['epochs']} | "
          f"{layer['loss_before']:.4f} | {layer['loss_after']:.4f} |"
      )
  lines.append("")
  lines.append(
      "Mean squared error of reconstructing the clean input of each layer from a masked copy, "
      "on 2,000 training images, before and after that layer's training (mean over seeds). "
      "Pre-training time: " + ", ".join(
          f"{row['experiment']} {row['time_s']:.0f} s" for row in table["pretraining"]
      ) + " (mean over seeds)."
  )
  return lines
def _shifted_means(rs: list[dict[str, Any]]) -> dict[str, Any]:
  """`{"shifted_accuracy_mean": {"1": ..., ...}}` over seeds, for runs scored on moved test
  images (`Experiment.shifts`); nothing for the others, so their tables do not change."""
  if "shifted_accuracy" not in rs[0]:
    return {}
  return {"shifted_accuracy_mean": {
      p: float(np.mean([r["shifted_accuracy"][p] for r in rs]))
      for p in sorted(rs[0]["shifted_accuracy"], key=int)
  }}


def shift_pixels(table: dict[str, Any]) -> list[str]:
  """The shifts (in pixels, as the records' keys) that any row was scored at, ascending."""
  found = {p for row in table["rows"] for p in row.get("shifted_accuracy_mean", {})}
  return sorted(found, key=int)


def columns(table: dict[str, Any]) -> tuple[str, ...]:
  """COLUMNS, with "shift N px" after the test accuracy when the rows have shifts."""
  i = COLUMNS.index("test accuracy") + 1
  return COLUMNS[:i] + tuple(f"shift {p} px" for p in shift_pixels(table)) + COLUMNS[i:]


def carried_over(records: list[dict[str, Any]], prov: dict[str, Any]) -> list[str]:
  """The records computed by other code than the table's commit (finished runs that a
  resumed suite skipped), as "experiment/seed_s at COMMIT"."""
  here = (prov["git_commit"], prov["git_dirty"])
  out = []
  for r in records:
    there = (r.get("git_commit"), r.get("git_dirty"))
    if there != here:
      commit = there[0][:12] if there[0] else "an unrecorded commit"
      commit += " (uncommitted changes)" if there[1] else ""
      out.append(f"{r['experiment']}/seed_{r['seed']} at {commit}")
  return out


def _cells(row: dict[str, Any]) -> dict[str, str]:
  n = len(row["seeds"])
  acc = f"{row['test_accuracy_mean']:.4f}"
  if n > 1:
    acc += f" ± {row['test_accuracy_std']:.4f}"
  shifted = {
      f"shift {p} px": f"{a:.4f}" for p, a in row.get("shifted_accuracy_mean", {}).items()
  }
  return {
      **shifted,
      "experiment": row["experiment"],
      "representation": row["representation"],
      "kind": row["kind"],
      "size": f"{row['size']:,} {row['size_unit']}",
      "time (s)": f"{row['time_s']:.1f}" + (f" ({row['device']})" if row.get("device") else ""),
      "test accuracy": acc,
      "seeds": "1 (seed-independent)" if row["seed_independent"] else str(n),
      "published": (
          f"{row['anchor_accuracy']:.3f} ({row['anchor']})" if row["anchor"] else "—"
      ),
  }


def render_markdown(table: dict[str, Any]) -> str:
  p = table["provenance"]
  cols = columns(table)
  lines = [
      f"# {table['suite']} on {table['dataset']}",
      "",
      "| " + " | ".join(cols) + " |",
      "|" + "|".join("---" for _ in cols) + "|",
  ]
  for row in table["rows"]:
    cells = _cells(row)
    lines.append("| " + " | ".join(cells.get(c, "—") for c in cols) + " |")
  packages = ", ".join(f"{k} {v}" for k, v in p["packages"].items())
  hashes = ", ".join(f"{k}={v}" for k, v in p["config_hashes"].items())
  lines += [
      "",
      "Test accuracy: mean ± sample std over seeds. Time: feature extraction + probe fit, or "
      "end-to-end training, mean over seeds (wall clock).",
  ]
  if shift_pixels(table):
    lines.append(
        "Shift N px: test accuracy with every test image moved N pixels up, down, left and "
        "right (zero fill), mean over the four and over seeds."
    )
  if table.get("note"):
    lines.append(table["note"])
  lines += _labels_markdown(table) + _pretraining_markdown(table)
  lines += [
      "",
      "## Provenance",
      "",
      f"- commit: {p['git_commit']} (uncommitted changes: {p['git_dirty']})",
      *([f"- computed by other code and carried over: {', '.join(p['carried_over'])}"]
        if p.get("carried_over") else []),
      *([f"- not run (the table reports the finished runs only): {', '.join(p['not_run'])}"]
        if p.get("not_run") else []),
      *([("- computed on another device (its time is that device's): "
          f"{', '.join(p['other_devices'])}")] if p.get("other_devices") else []),
      f"- devices: {p['device_count']} x {p['device_kind']} ({p['platform']})",
      f"- seeds: {', '.join(map(str, p['seeds']))}",
      f"- python {p['python']}; {packages}",
      f"- config hashes: {hashes}",
      f"- created: {p['created']}",
      "",
  ]
  return "\n".join(lines)


def render_csv(table: dict[str, Any]) -> str:
  out = io.StringIO()
  fields = [
      "experiment", "representation", "kind", "size", "size_unit", "time_s",
      "test_accuracy_mean", "test_accuracy_std", "train_accuracy_mean", "num_seeds",
      "anchor", "anchor_accuracy",
  ]
  shifts = {f"shift_{p}px_accuracy_mean": p for p in shift_pixels(table)}
  # "device": only when a row was computed on another device than the table's.
  fields += ["device"] if any(row.get("device") for row in table["rows"]) else []
  writer = csv.DictWriter(out, fields + list(shifts), lineterminator="\n")
  writer.writeheader()
  for row in table["rows"]:
    shifted = row.get("shifted_accuracy_mean", {})
    writer.writerow({
        **{k: row[k] for k in fields if k in row}, "num_seeds": len(row["seeds"]),
        **{k: shifted[p] for k, p in shifts.items() if p in shifted},
    })
  return out.getvalue()


def write_tables(table: dict[str, Any], workdir: pathlib.Path) -> None:
  write_text_atomic(workdir / "table.md", render_markdown(table))
  write_text_atomic(workdir / "table.csv", render_csv(table))
  write_json_atomic(workdir / "table.json", table)


def strip_timing(markdown: str) -> str:
  """The markdown table without its timing column and creation time (for comparisons)."""
  out = []
  drop = [COLUMNS.index(c) for c in TIMING_COLUMNS]
  for line in markdown.splitlines():
    if line.startswith("- created:"):
      continue
    if line.startswith("|"):
      cells = line.strip("|").split("|")
      line = "|".join(c for i, c in enumerate(cells) if i not in drop)
    out.append(line)
  return "\n".join(out)


def load_table(workdir: str | pathlib.Path) -> dict[str, Any]:
  return json.loads((pathlib.Path(workdir) / "table.json").read_text())
