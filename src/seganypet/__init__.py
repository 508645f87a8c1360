"""seganypet: promptable 3D segmentation of whole-body PET.

Everything but ``InputError`` is loaded on first use: ``PetImage`` needs nibabel, ``load_model``
and ``Session`` need torch, and ``seganypet --help`` needs none of them.
"""

from seganypet.errors import InputError
from seganypet.lazy import lazy_exports
from seganypet.version import __version__

_EXPORTS = {
    "PetImage": "seganypet.image",
    "Session": "seganypet.session",
    "load_model": "seganypet.model",
}

__all__ = ["InputError", "PetImage", "Session", "__version__", "load_model"]


__getattr__ = lazy_exports(__name__, _EXPORTS)
