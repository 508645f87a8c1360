"""From a fine activity canvas to a scanner-like PET image.

The chain: blur the fine activity with the system PSF (plus the native voxel's own width), warp it
by a smooth random displacement field while resampling it onto the native voxel grid, multiply by
a faint tissue texture, and add count noise whose variance follows the local activity, the body's
attenuation and the sensitivity profile of the overlapping bed positions, smoothed to the
correlated texture of an iterative reconstruction. Noise is correlated over a length in mm (set by
the reconstruction, not by the voxel), so its variance scales with the volume of a correlation
cell rather than with the voxel's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from seganypet.synth.geometry import Canvas

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
WATER_ATTENUATION_PER_MM = 0.0096  # 511 keV
REFERENCE_VOXEL_MM = 4.0  # ``noise_cov`` is the liver's relative noise in 4 mm voxels ...
REFERENCE_CORRELATION_MM = 1.5  # ... with this noise correlation length
NOISE_FLOOR_SUV = 0.002  # corrected randoms and scatter: outside the body stays close to 0
MAX_LOG_VARIANCE = 0.5  # caps the relative noise of the coldest voxels (about 80%)
REFERENCE_LIVER_SUV = 2.3


@dataclass(frozen=True)
class Acquisition:
    """How one case was 'scanned'."""

    spacing_mm: tuple[float, float, float]
    psf_fwhm_mm: tuple[float, float]  # transaxial, axial
    noise_cov: float  # relative noise in liver at 4 mm voxels
    noise_correlation_mm: float  # sigma of the Gaussian that correlates the noise
    noise_power: float  # variance ~ activity ** noise_power
    bed_length_mm: float
    bed_overlap: float
    displacement_mm: float
    texture_cov: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        spacing_range_mm: tuple[float, float] = (2.0, 5.0),
        psf_fwhm_range_mm: tuple[float, float] = (4.0, 7.0),
        noise_cov_range: tuple[float, float] = (0.08, 0.25),
        displacement_mm: float = 6.0,
    ) -> Acquisition:
        in_plane = round(float(rng.uniform(*spacing_range_mm)), 2)
        axial = round(float(rng.uniform(*spacing_range_mm)), 2)
        transaxial_fwhm = float(rng.uniform(*psf_fwhm_range_mm))
        axial_fwhm = float(np.clip(transaxial_fwhm * rng.uniform(0.9, 1.15), *psf_fwhm_range_mm))
        return cls(
            spacing_mm=(in_plane, in_plane, axial),
            psf_fwhm_mm=(transaxial_fwhm, axial_fwhm),
            noise_cov=float(rng.uniform(*noise_cov_range)),
            noise_correlation_mm=float(rng.uniform(0.8, 2.2)),
            noise_power=float(rng.uniform(1.2, 1.9)),
            bed_length_mm=float(rng.uniform(150.0, 260.0)),
            bed_overlap=float(rng.uniform(0.25, 0.5)),
            displacement_mm=displacement_mm * float(rng.uniform(0.5, 1.0)),
            texture_cov=float(rng.uniform(0.06, 0.12)),
        )


@dataclass
class NativeGrid:
    """The output voxel grid: axes along x, y, z (RAS+), voxel (0, 0, 0) at ``origin``."""

    origin: np.ndarray
    spacing: np.ndarray
    shape: tuple[int, int, int]

    @classmethod
    def inside(
        cls, canvas: Canvas, spacing: tuple[float, float, float], margin_mm: float
    ) -> NativeGrid:
        spacing_arr = np.asarray(spacing, dtype=float)
        lo = canvas.origin + margin_mm
        extent = (np.asarray(canvas.shape) - 1) * canvas.spacing - 2 * margin_mm
        shape = tuple(int(n) for n in np.floor(extent / spacing_arr) + 1)
        lo = lo + 0.5 * (extent - (np.asarray(shape) - 1) * spacing_arr)
        return cls(lo, spacing_arr, shape)  # type: ignore[arg-type]

    @property
    def affine(self) -> np.ndarray:
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = self.origin
        return affine

    def axis(self, k: int) -> np.ndarray:
        return self.origin[k] + self.spacing[k] * np.arange(self.shape[k])


def psf_blur(canvas: Canvas, acquisition: Acquisition) -> np.ndarray:
    """The fine activity blurred by the PSF and by the width of a native voxel."""
    fwhm = (acquisition.psf_fwhm_mm[0], acquisition.psf_fwhm_mm[0], acquisition.psf_fwhm_mm[1])
    blurred = canvas.activity
    for axis in range(3):
        native = acquisition.spacing_mm[axis]
        variance = (fwhm[axis] * FWHM_TO_SIGMA) ** 2 + max(
            native**2 - canvas.spacing**2, 0.0
        ) / 12.0
        blurred = ndimage.gaussian_filter1d(
            blurred, np.sqrt(variance) / canvas.spacing, axis=axis, truncate=3.0
        )
    return blurred


def displacement_field(
    rng: np.random.Generator,
    grid: NativeGrid,
    amplitude_mm: float,
    control_spacing_mm: float = 70.0,
) -> torch.Tensor:
    """A smooth random displacement (mm) at every native voxel, shape (3, *grid.shape).

    Random control-point displacements, cubic-spline refined, then linearly interpolated.
    """
    extent = (np.asarray(grid.shape) - 1) * grid.spacing
    controls = tuple(int(n) for n in np.ceil(extent / control_spacing_mm) + 2)
    coarse = rng.standard_normal((3, *controls)).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, (0, 0.7, 0.7, 0.7))
    coarse *= amplitude_mm / (coarse.std() + 1e-6)
    refined = np.stack([ndimage.zoom(c, 4, order=3) for c in coarse])
    field = F.interpolate(
        torch.from_numpy(refined)[None], size=grid.shape, mode="trilinear", align_corners=True
    )
    return field[0]


def sampling_grid(canvas: Canvas, grid: NativeGrid, displacement: torch.Tensor) -> torch.Tensor:
    """Normalised ``grid_sample`` coordinates of the displaced native voxels on the fine canvas.

    Consumes ``displacement`` (its memory is reused).
    """
    coords = torch.empty((1, *grid.shape, 3), dtype=torch.float32)
    for k in range(3):
        world = torch.from_numpy(grid.axis(k).astype(np.float32)).reshape(
            [-1 if i == k else 1 for i in range(3)]
        )
        scale = 2.0 / ((canvas.shape[k] - 1) * canvas.spacing)
        channel = displacement[k].add_(world).sub_(float(canvas.origin[k])).mul_(scale).sub_(1.0)
        coords[0, ..., 2 - k] = channel  # grid_sample wants (x, y, z) = (last, middle, first) axis
    return coords


def sample(volume: np.ndarray, grid: torch.Tensor, nearest: bool = False) -> np.ndarray:
    source = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    mode = "nearest" if nearest else "bilinear"
    out = F.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return out[0, 0].numpy()


def smooth_random_field(
    rng: np.random.Generator, shape: tuple[int, ...], spacing: np.ndarray, correlation_mm: float
) -> np.ndarray:
    """Zero-mean unit-variance Gaussian noise correlated over about ``correlation_mm``."""
    step = correlation_mm / 2.0
    coarse_shape = tuple(int(n) for n in np.ceil(np.asarray(shape) * spacing / step) + 1)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 1.0)
    coarse /= coarse.std() + 1e-6
    field = F.interpolate(
        torch.from_numpy(coarse)[None, None], size=shape, mode="trilinear", align_corners=True
    )
    return field[0, 0].numpy()


def tissue_texture(rng: np.random.Generator, grid: NativeGrid, cov: float) -> np.ndarray:
    """A mean-one lognormal multiplier: uptake heterogeneity within tissues at 20 mm and 7 mm scales."""
    coarse = smooth_random_field(rng, grid.shape, grid.spacing, correlation_mm=20.0)
    fine = smooth_random_field(rng, grid.shape, grid.spacing, correlation_mm=7.0)
    field = (coarse + fine) * np.float32(cov / np.sqrt(2.0))
    return np.exp(field - np.float32(0.5 * cov**2))


def _correlation_cell_mm3(spacing: np.ndarray, correlation_mm: float) -> float:
    """The volume over which reconstructed noise averages: the voxel widened by the correlation."""
    return float(np.prod(np.sqrt(np.asarray(spacing) ** 2 + (2.0 * correlation_mm) ** 2)))


def _gaussian_power(sigma: float, truncate: float) -> float:
    """Sum of squared weights of scipy's 1D Gaussian kernel: the variance it leaves to white noise."""
    radius = int(truncate * sigma + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weights /= weights.sum()
    return float((weights**2).sum())


def bed_sensitivity(z: np.ndarray, bed_length_mm: float, overlap: float) -> np.ndarray:
    """Relative sensitivity along z of overlapping bed positions (triangular axial profiles)."""
    step = bed_length_mm * (1.0 - overlap)
    top = z.max() - 0.3 * bed_length_mm
    centers = top - step * np.arange(int(np.ceil((z.max() - z.min() + bed_length_mm) / step)) + 1)
    profiles = np.clip(
        1.0 - np.abs(z[:, None] - centers[None, :]) / (0.5 * bed_length_mm), 0.0, None
    )
    sensitivity = profiles.sum(axis=1)
    return sensitivity / np.median(sensitivity)


def add_noise(
    rng: np.random.Generator,
    activity: np.ndarray,
    body: np.ndarray,
    grid: NativeGrid,
    acquisition: Acquisition,
) -> np.ndarray:
    """Count noise: variance grows with (local and spread) activity, attenuation and 1/sensitivity."""
    spacing = grid.spacing
    reference_cell = _correlation_cell_mm3(np.full(3, REFERENCE_VOXEL_MM), REFERENCE_CORRELATION_MM)
    cell = _correlation_cell_mm3(spacing, acquisition.noise_correlation_mm)
    gain = (acquisition.noise_cov * REFERENCE_LIVER_SUV) ** 2 * reference_cell / cell

    pooled = F.avg_pool3d(torch.from_numpy(activity)[None, None], kernel_size=2, ceil_mode=True)
    pooled = ndimage.gaussian_filter(pooled[0, 0].numpy(), 12.0 / (2.0 * spacing))
    spread = F.interpolate(
        torch.from_numpy(pooled)[None, None],
        size=activity.shape,
        mode="trilinear",
        align_corners=True,
    )
    spread = spread[0, 0].numpy()

    area = body.sum(axis=(0, 1)) * spacing[0] * spacing[1]
    path = 2.0 * np.sqrt(area / np.pi)
    attenuation = np.exp(0.5 * WATER_ATTENUATION_PER_MM * (path - 250.0))
    sensitivity = bed_sensitivity(grid.axis(2), acquisition.bed_length_mm, acquisition.bed_overlap)
    along_z = (attenuation / np.clip(sensitivity, 0.35, None)).astype(np.float32)

    # Variance ~ activity**p: p = 1 is Poisson counting; EM reconstructions push p towards 2 (a noise
    # level proportional to the activity, as in real whole-body images).
    mixed = (0.65 * activity + 0.35 * spread) / np.float32(REFERENCE_LIVER_SUV)
    variance = gain * mixed ** np.float32(acquisition.noise_power) * along_z[None, None, :]
    white = rng.standard_normal(activity.shape, dtype=np.float32)
    sigmas = acquisition.noise_correlation_mm / spacing
    correlated = ndimage.gaussian_filter(white, sigmas, truncate=3.0)
    correlated *= 1.0 / np.sqrt(np.prod([_gaussian_power(s, truncate=3.0) for s in sigmas]))
    # Log-normal with that mean and variance, as ML-EM noise is (Barrett et al. 1994): skewed,
    # never negative, and unbiased in cold tissue.
    mean = activity + np.float32(NOISE_FLOOR_SUV)
    log_variance = np.minimum(np.log1p(variance / (mean * mean)), np.float32(MAX_LOG_VARIANCE))
    noisy = mean * np.exp(np.sqrt(log_variance) * correlated - 0.5 * log_variance)
    return noisy.astype(np.float32)
