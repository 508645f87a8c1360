"""Training and fine-tuning promptable networks with simulated clicks (``seganypet train``).

- :mod:`~seganypet.train.data`: the resampled cache of the cases :mod:`seganypet.datasets`
  finds, prompt targets (its objects: labels and lesion components), crops;
- :mod:`~seganypet.train.augment`: flips, rotation, zoom, intensity;
- :mod:`~seganypet.train.clicks`: the simulated user and the click rounds;
- :mod:`~seganypet.train.objective`: the loss of one step, CPCL label rectification;
- :mod:`~seganypet.train.loop`: optimiser, schedule, checkpoints, exact resume, logs,
  validation, several processes;
- :mod:`~seganypet.train.command`: the ``train`` subcommand (``add_train_parser``).
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "resolve_config": "config",
    "TrainSummary": "loop",
    "Trainer": "loop",
    "build_network": "loop",
    "train": "loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Loaded on first use, so that ``seganypet --help`` (which registers the train command)
    does not import torch through the training loop."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seganypet.train' has no attribute {name!r}")
    return getattr(import_module(f"seganypet.train.{_EXPORTS[name]}"), name)
