"""Evaluating promptable PET segmentation with a simulated user, and the classical baselines.

- :mod:`~seganypet.evaluate.metrics`: Dice, NSD, HD95, autoPET false-positive and false-negative
  volumes, normalised AUC.
- :mod:`~seganypet.evaluate.protocols`: the protocols' registry; :mod:`~seganypet.evaluate.users`:
  their simulated users (``clicks``, ``clicks-random``, ``scribbles``,
  ``box-clicks``, ``autopet``).
- :mod:`~seganypet.evaluate.data`: reading a case found by :mod:`seganypet.datasets` and its
  objects (defined there, shared with training).
- :mod:`~seganypet.evaluate.runner`: :func:`run_evaluation`, resumable, writing ``per_step.csv``,
  ``summary.json`` and ``dice_vs_clicks.png`` (:mod:`~seganypet.evaluate.report`).
- :mod:`~seganypet.evaluate.command`: the ``seganypet evaluate`` subcommand.
"""

from seganypet.lazy import lazy_exports

_EXPORTS = {
    "StepMetrics": "seganypet.evaluate.metrics",
    "dice": "seganypet.evaluate.metrics",
    "false_negative_volume_ml": "seganypet.evaluate.metrics",
    "false_positive_volume_ml": "seganypet.evaluate.metrics",
    "hausdorff_distance": "seganypet.evaluate.metrics",
    "normalised_auc": "seganypet.evaluate.metrics",
    "normalised_surface_dice": "seganypet.evaluate.metrics",
    "step_metrics": "seganypet.evaluate.metrics",
    "PROTOCOLS": "seganypet.evaluate.protocols",
    "autopet_clicks": "seganypet.evaluate.users",
    "make_user": "seganypet.evaluate.users",
    "EvaluationSettings": "seganypet.evaluate.runner",
    "run_evaluation": "seganypet.evaluate.runner",
}

__all__ = sorted(_EXPORTS)


# Loaded on first use: the runner and the training loop import torch.
__getattr__ = lazy_exports(__name__, _EXPORTS)
