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

from seganypet.train.config import TrainConfig, resolve_config
from seganypet.train.loop import Trainer, TrainSummary, build_network, train

__all__ = ["TrainConfig", "TrainSummary", "Trainer", "build_network", "resolve_config", "train"]
