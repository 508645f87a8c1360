"""One synthetic whole-body PET case (FDG or PSMA): image, organ and lesion labels, and how it was
made."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seganypet.image import PetImage
from seganypet.synth.anatomy import AnatomyPainter, BodyPlan
from seganypet.synth.imaging import (
    Acquisition,
    NativeGrid,
    add_noise,
    displacement_field,
    psf_blur,
    sample,
    sampling_grid,
    tissue_texture,
)
from seganypet.synth.labels import LABEL_NAMES, PSMA_SUV_RANGES, TRACERS
from seganypet.synth.lesions import LesionInfo, LesionStyle, place_lesions, rasterize_lesions

GENERATOR_VERSION = "1.0"


@dataclass(frozen=True)
class PhantomConfig:
    """What may vary between cases. Every case draws its own values inside these ranges."""

    fine_spacing_mm: float = 2.0
    spacing_range_mm: tuple[float, float] = (2.0, 5.0)
    psf_fwhm_range_mm: tuple[float, float] = (4.0, 7.0)
    noise_cov_range: tuple[float, float] = (0.08, 0.25)
    lesion_count_range: tuple[int, int] = (0, 20)
    lesion_volume_range_ml: tuple[float, float] = (0.3, 300.0)
    lesion_suv_range: tuple[float, float] = (2.0, 30.0)
    arms_up_probability: float = 0.5
    displacement_mm: float = 6.0
    noise: bool = True
    tracer: str = "FDG"  # FDG, PSMA, or mixed (each case draws one, half and half)
    lesion_variety: str = "standard"  # or wide: see seganypet.synth.lesions
    lesion_contrast_range: tuple[float, float] = (1.8, 10.0)

    def __post_init__(self) -> None:
        if self.tracer not in (*TRACERS, "mixed"):
            raise ValueError(f"unknown tracer {self.tracer!r}; choose FDG, PSMA or mixed")
        LesionStyle(self.lesion_variety, self.lesion_contrast_range)

    @classmethod
    def wide(cls, **changes) -> PhantomConfig:
        """The variety real scanners and lesions show: voxels of 2-5.5 mm, PSF 4-9 mm FWHM,
        noise from low to high, and the wide lesion style with contrasts 1.15-15."""
        settings = dict(
            spacing_range_mm=(2.0, 5.5),
            psf_fwhm_range_mm=(4.0, 9.0),
            noise_cov_range=(0.06, 0.35),
            lesion_variety="wide",
            lesion_contrast_range=(1.15, 15.0),
        )
        settings.update(changes)
        return cls(**settings)

    def case_tracer(self, seed: int) -> str:
        """The tracer of the case drawn with ``seed`` (its own stream: the rest of the case is
        drawn as for a single-tracer data set)."""
        if self.tracer != "mixed":
            return self.tracer
        return TRACERS[int(np.random.default_rng([int(seed), 7]).integers(len(TRACERS)))]


@dataclass
class Phantom:
    """A generated case.

    ``labels`` and ``lesion_instances`` lie on ``image``'s grid. ``labels`` uses ``label_names``
    (every lesion is the one ``lesion`` label); ``lesion_instances`` numbers the lesions 1..n in
    the order of ``lesions``. ``parameters`` records what was drawn: build, uptake, acquisition.
    """

    image: PetImage
    labels: np.ndarray
    label_names: dict[int, str]
    lesions: list[LesionInfo]
    lesion_instances: np.ndarray
    parameters: dict = field(default_factory=dict)


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` of a data set drawn with ``seed``."""
    return int(
        np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0]
    )


def generate_phantom(seed: int, config: PhantomConfig | None = None) -> Phantom:
    """A whole-body PET phantom, the same for the same ``seed`` and ``config``."""
    config = config or PhantomConfig()
    tracer = config.case_tracer(seed)
    rng = np.random.default_rng(seed)
    plan = BodyPlan.sample(rng, config.arms_up_probability, tracer)
    painter = AnatomyPainter(plan, rng, config.fine_spacing_mm)
    canvas = painter.paint()
    organ_labels = canvas.labels.copy()
    lesions = place_lesions(
        canvas,
        painter.landmarks,
        rng,
        plan.uptake,
        config.lesion_count_range,
        config.lesion_volume_range_ml,
        _lesion_suv_range(config, tracer),
        LesionStyle(config.lesion_variety, config.lesion_contrast_range),
    )

    acquisition = Acquisition.sample(
        rng,
        config.spacing_range_mm,
        config.psf_fwhm_range_mm,
        config.noise_cov_range,
        config.displacement_mm,
    )
    grid = NativeGrid.inside(canvas, acquisition.spacing_mm, margin_mm=10.0)
    displacement = displacement_field(rng, grid, acquisition.displacement_mm)
    sampling = sampling_grid(canvas, grid, displacement)
    del displacement
    activity = sample(psf_blur(canvas, acquisition), sampling)
    labels = sample(organ_labels, sampling, nearest=True).astype(np.uint8)
    del organ_labels
    instances, lesion_infos = rasterize_lesions(lesions, canvas, grid, sampling, labels)
    del sampling, canvas

    activity *= tissue_texture(rng, grid, acquisition.texture_cov)
    if config.noise:
        activity = add_noise(rng, activity, labels > 0, grid, acquisition)
    image = PetImage(
        activity.astype(np.float32),
        grid.affine,
        units="SUVbw",
        metadata={
            "source": "seganypet.synth",
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "tracer": tracer,
        },
    )
    parameters = {
        "seed": int(seed),
        "generator_version": GENERATOR_VERSION,
        "tracer": tracer,
        "height_mm": plan.height_mm,
        "lateral_scale": plan.lateral_scale,
        "ap_scale": plan.ap_scale,
        "fat_mm": plan.fat_mm,
        "belly_mm": plan.belly_mm,
        "arms_up": plan.arms_up,
        "bladder_ml": plan.bladder_ml,
        "uptake_suv": dict(plan.uptake),
        "acquisition": acquisition.to_dict(),
    }
    return Phantom(image, labels, dict(LABEL_NAMES), lesion_infos, instances, parameters)


def _lesion_suv_range(config: PhantomConfig, tracer: str) -> tuple[float, float]:
    """The configured range; PSMA lesions may be hotter (up to the PSMA table's maximum)."""
    low, high = config.lesion_suv_range
    if tracer == "PSMA":
        high = max(high, PSMA_SUV_RANGES["lesion"][1])
    return (low, high)
