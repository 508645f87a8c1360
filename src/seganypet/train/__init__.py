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

from seganypet.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "seganypet.train.config",
    "resolve_config": "seganypet.train.config",
    "TrainSummary": "seganypet.train.loop",
    "Trainer": "seganypet.train.loop",
    "build_network": "seganypet.train.loop",
    "train": "seganypet.train.loop",
}

__all__ = sorted(_EXPORTS)


# Loaded on first use: the runner and the training loop import torch.
__getattr__ = lazy_exports(__name__, _EXPORTS)
