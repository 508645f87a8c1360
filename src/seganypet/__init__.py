"""seganypet: promptable 3D segmentation of whole-body PET.

Everything but ``InputError`` is loaded on first use: ``PetImage`` needs nibabel, ``load_model``
and ``Session`` need torch, and ``seganypet --help`` needs none of them.
"""

from importlib import import_module
from typing import Any

from seganypet.errors import InputError

__version__ = "0.1.0"

_EXPORTS = {
    "PetImage": "seganypet.image",
    "Session": "seganypet.session",
    "load_model": "seganypet.model",
}

__all__ = ["InputError", "PetImage", "Session", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seganypet' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
