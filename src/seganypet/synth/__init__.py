"""Synthetic whole-body FDG PET phantoms with organ and lesion label maps.

``generate_phantom(seed)`` builds one case: a body from head to thighs (arms up or down), organs
with literature FDG uptake, 0-20 lesions, PSF blur, native voxels and correlated count noise.
``write_dataset(out_dir, cases, seed)`` writes many as an nnU-Net v2 raw data set. The label ids
are in ``LABELS`` (see :mod:`seganypet.synth.labels` for the table and the uptake ranges).
"""

from seganypet.lazy import lazy_exports

_EXPORTS = {
    "write_dataset": "seganypet.synth.dataset",
    "LABEL_NAMES": "seganypet.synth.labels",
    "LABELS": "seganypet.synth.labels",
    "LESION_LABEL": "seganypet.synth.labels",
    "STRUCTURES": "seganypet.synth.labels",
    "SUV_RANGES": "seganypet.synth.labels",
    "LesionInfo": "seganypet.synth.lesions",
    "GENERATOR_VERSION": "seganypet.synth.phantom",
    "Phantom": "seganypet.synth.phantom",
    "PhantomConfig": "seganypet.synth.phantom",
    "case_seed": "seganypet.synth.phantom",
    "generate_phantom": "seganypet.synth.phantom",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
