"""Experiment registry and reproducible benchmark tables (engineered vs learned features)."""

from cnn_jax.benchmark.registry import (
    EXPERIMENTS,
    KINDS,
    SUITES,
    Experiment,
    register,
    register_suite,
    suite,
)
from cnn_jax.benchmark.runner import run_suite
from cnn_jax.benchmark.tables import load_table, render_markdown, strip_timing

__all__ = [
    "EXPERIMENTS",
    "KINDS",
    "SUITES",
    "Experiment",
    "load_table",
    "register",
    "register_suite",
    "render_markdown",
    "run_suite",
    "strip_timing",
    "suite",
]
