"""Synthetic whole-body FDG PET phantoms with organ and lesion label maps.

``generate_phantom(seed)`` builds one case: a body from head to thighs (arms up or down), organs
with literature FDG uptake, 0-20 lesions, PSF blur, native voxels and correlated count noise.
``write_dataset(out_dir, cases, seed)`` writes many as an nnU-Net v2 raw data set. The label ids
are in ``LABELS`` (see :mod:`seganypet.synth.labels` for the table and the uptake ranges).
"""

from seganypet.synth.dataset import write_dataset
from seganypet.synth.labels import LABEL_NAMES, LABELS, LESION_LABEL, STRUCTURES, SUV_RANGES
from seganypet.synth.lesions import LesionInfo
from seganypet.synth.phantom import (
    GENERATOR_VERSION,
    Phantom,
    PhantomConfig,
    case_seed,
    generate_phantom,
)

__all__ = [
    "GENERATOR_VERSION",
    "LABELS",
    "LABEL_NAMES",
    "LESION_LABEL",
    "STRUCTURES",
    "SUV_RANGES",
    "LesionInfo",
    "Phantom",
    "PhantomConfig",
    "case_seed",
    "generate_phantom",
    "write_dataset",
]
