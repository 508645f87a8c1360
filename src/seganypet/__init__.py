"""seganypet: promptable 3D segmentation of whole-body PET."""

from seganypet.errors import InputError
from seganypet.image import PetImage

__version__ = "0.1.0"

__all__ = ["InputError", "PetImage", "__version__"]
