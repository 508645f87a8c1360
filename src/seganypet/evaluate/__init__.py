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

from seganypet.evaluate.metrics import (
    StepMetrics,
    dice,
    false_negative_volume_ml,
    false_positive_volume_ml,
    hausdorff_distance,
    normalised_auc,
    normalised_surface_dice,
    step_metrics,
)
from seganypet.evaluate.protocols import PROTOCOLS, autopet_clicks, make_user
from seganypet.evaluate.runner import EvaluationSettings, run_evaluation

__all__ = [
    "PROTOCOLS",
    "EvaluationSettings",
    "StepMetrics",
    "autopet_clicks",
    "dice",
    "false_negative_volume_ml",
    "false_positive_volume_ml",
    "hausdorff_distance",
    "make_user",
    "normalised_auc",
    "normalised_surface_dice",
    "run_evaluation",
    "step_metrics",
]
