"""``seganypet demo``: the bundled model on a synthetic whole-body phantom (and STS_001 when present).

A simulated user clicks each object, first at its most interior voxel and then at the centre of
the largest error, exactly as the ``clicks`` evaluation protocol does. For every case the demo
writes the PET image, the label map of the segmented objects, their SUV statistics (with the
Dice against the known truth after every click) and a coronal MIP with the masks and the clicks.
"""

from seganypet.lazy import lazy_exports

_EXPORTS = {"run_demo": "seganypet.demo.run"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
