"""PNG plots written into the suite's workdir (matplotlib, no display needed)."""

from __future__ import annotations

import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cnn_jax.run import Run  # noqa: E402

KIND_COLOURS = {
    "engineered": "tab:blue", "random": "tab:gray", "unsupervised": "tab:green",
    "learned": "tab:red",
}


def accuracy_vs_time(table: dict[str, Any], path: pathlib.Path) -> None:
  """Test accuracy (mean ± std) against wall-clock time per experiment, coloured by kind.

  Rows with no finished run (a `report_only` table) are left out; with none left, no plot.
  """
  rows = [r for r in table["rows"] if r.get("seeds") and r.get("test_accuracy_mean") is not None]
  if not rows:
    return
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for row in rows:  # a row computed on another device: open marker, its device named
    elsewhere = row.get("device")
    ax.errorbar(
        max(row["time_s"], 1e-2), row["test_accuracy_mean"], yerr=row["test_accuracy_std"],
        fmt="o", color=KIND_COLOURS[row["kind"]], capsize=3, mfc="none" if elsewhere else None,
    )
    label = row["experiment"] + (f" (on {elsewhere})" if elsewhere else "")
    ax.annotate(label, (max(row["time_s"], 1e-2), row["test_accuracy_mean"]),
                textcoords="offset points", xytext=(5, 3), fontsize=8)
  for kind, colour in KIND_COLOURS.items():
    ax.scatter([], [], color=colour, label=kind)
  ax.set_xscale("log")
  ax.set_xlabel("time: extraction + probe, or training (s, log scale)")
  ax.set_ylabel("test accuracy")
  ax.set_title(f"{table['suite']} on {table['dataset']}")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def accuracy_vs_labels(table: dict[str, Any], path: pathlib.Path) -> bool:
  """Test accuracy (mean ± std over seeds) against the labelled-set size, one line per group.

  Returns False (and writes nothing) when the table has no grouped rows.
  """
  from cnn_jax.benchmark.tables import by_labels

  sizes, groups = by_labels(table)
  if not groups:
    return False
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for group, rows in groups.items():
    ns = sorted(rows)
    ax.errorbar(
        ns, [rows[n]["test_accuracy_mean"] for n in ns],
        yerr=[rows[n]["test_accuracy_std"] for n in ns], marker="o", capsize=3, label=group,
        linestyle="--" if "random init" in group else "-",
    )
  ax.set_xscale("log")
  ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
  ax.set_xlabel("labelled training examples (log scale)")
  ax.set_ylabel("test accuracy")
  ax.set_title(f"{table['suite']} on {table['dataset']}")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def learning_curves(runs: dict[str, pathlib.Path], path: pathlib.Path) -> None:
  """Training loss per logged step and test accuracy per epoch of end-to-end runs."""
  if not runs:
    return
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
  for label, workdir in runs.items():
    metrics = Run(workdir).read_metrics()
    train = [m for m in metrics if m["split"] == "train"]
    test = [m for m in metrics if m["split"] == "test"]
    left.plot([m["step"] for m in train], [m["loss"] for m in train], label=label, lw=1)
    right.plot([m["epoch"] for m in test], [m["accuracy"] for m in test], marker=".", label=label)
  left.set(xlabel="step", ylabel="training loss", yscale="log", title="training loss")
  right.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
  for ax in (left, right):
    ax.grid(alpha=0.3)
  right.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
