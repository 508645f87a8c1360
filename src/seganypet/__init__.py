"""seganypet: promptable 3D segmentation of whole-body PET.

``load_model`` and ``Session`` import torch, so they are loaded on first use.
"""

from typing import Any

from seganypet.errors import InputError
from seganypet.image import PetImage

__version__ = "0.1.0"

__all__ = ["InputError", "PetImage", "Session", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from seganypet.model import load_model

        return load_model
    if name == "Session":
        from seganypet.session import Session

        return Session
    raise AttributeError(f"module 'seganypet' has no attribute {name!r}")
