"""Evaluating promptable PET segmentation with a simulated user, and the classical baselines.

- :mod:`~seganypet.evaluate.metrics`: Dice, NSD, HD95, autoPET false-positive and false-negative
  volumes, normalised AUC.
- :mod:`~seganypet.evaluate.protocols`: the simulated users (``clicks``, ``clicks-random``,
  ``box-clicks``, ``autopet``).
- :mod:`~seganypet.evaluate.data`: reading a case found by :mod:`seganypet.datasets` and its
  objects (defined there, shared with training).
- :mod:`~seganypet.evaluate.runner`: :func:`run_evaluation`, resumable, writing ``per_step.csv``,
  ``summary.json`` and ``dice_vs_clicks.png`` (:mod:`~seganypet.evaluate.report`).
- :mod:`~seganypet.evaluate.command`: the ``seganypet evaluate`` subcommand.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "StepMetrics": "metrics",
    "dice": "metrics",
    "false_negative_volume_ml": "metrics",
    "false_positive_volume_ml": "metrics",
    "hausdorff_distance": "metrics",
    "normalised_auc": "metrics",
    "normalised_surface_dice": "metrics",
    "step_metrics": "metrics",
    "PROTOCOLS": "protocols",
    "autopet_clicks": "protocols",
    "make_user": "protocols",
    "EvaluationSettings": "runner",
    "run_evaluation": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Loaded on first use, so that ``seganypet --help`` (which registers the evaluate command)
    does not import torch through the runner."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seganypet.evaluate' has no attribute {name!r}")
    return getattr(import_module(f"seganypet.evaluate.{_EXPORTS[name]}"), name)
