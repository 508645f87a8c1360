"""Maximum-intensity projections as nuclear-medicine readers view them, and the phantom-vs-real figure.

Regenerate the documentation figure with::

    python -m seganypet.synth.figures docs/img/synth_vs_sts001_mip.png
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from seganypet.datasets import shared_data_dir
from seganypet.errors import InputError
from seganypet.image import CanonicalView, PetImage

STS001_DIR = (shared_data_dir() or Path("../shared/data")) / "sts001_wholebody_ge" / "image"
STS001_SUV_FACTOR = 2.42903e-4  # SUVbw per Bq/ml, see shared/data/README.md
DEFAULT_WINDOW = (0.0, 10.0)


def coronal_mip(image: PetImage) -> tuple[np.ndarray, float]:
    """The anterior view MIP: rows from head to feet, the patient's right on the viewer's left.

    Returns the projection and the display aspect (height / width of one pixel).
    """
    view = image.canonical()
    return coronal_projection(view, view.image.array)


def coronal_projection(view: CanonicalView, canonical: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`coronal_mip` of any array on ``view``'s canonical (R, A, S) grid, such as a mask."""
    mip = np.asarray(canonical).max(axis=1)  # (x, z)
    spacing = view.image.spacing
    return np.ascontiguousarray(mip[::-1, ::-1].T), spacing[2] / spacing[0]


def show_mip(
    axes, image: PetImage, title: str = "", window: tuple[float, float] = DEFAULT_WINDOW
) -> None:
    """Draw a coronal MIP on matplotlib ``axes`` in inverted grey (hot = dark)."""
    mip, aspect = coronal_mip(image)
    spacing = image.canonical().image.spacing
    extent = (0.0, mip.shape[1] * spacing[0], mip.shape[0] * spacing[2], 0.0)  # millimetres
    axes.imshow(
        mip, cmap="gray_r", vmin=window[0], vmax=window[1], extent=extent, interpolation="bilinear"
    )
    axes.set_title(title, fontsize=10)
    axes.set_axis_off()


def save_mip(
    image: PetImage,
    path: str | os.PathLike,
    title: str = "",
    window: tuple[float, float] = DEFAULT_WINDOW,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mip, aspect = coronal_mip(image)
    height = 8.0
    width = max(2.0, height * mip.shape[1] / (mip.shape[0] * aspect))
    fig, axes = plt.subplots(figsize=(width, height + 0.4))
    show_mip(axes, image, title, window)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_pet_series(folder: str | os.PathLike, suv_factor: float) -> PetImage:
    """A single-bed-series DICOM PET folder in SUV, given its Bq/ml-to-SUV factor.

    Slices are sorted by ImagePositionPatient z; the array axes are (column, row, slice).
    """
    import pydicom

    files = sorted(Path(folder).glob("*.dcm"))
    if not files:
        raise InputError(f"{folder}: no DICOM files (*.dcm) found")
    slices = sorted(
        (pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2])
    )
    pixels = [
        d.pixel_array * float(d.RescaleSlope) + float(d.get("RescaleIntercept", 0.0))
        for d in slices
    ]
    array = (
        np.stack([p.T for p in pixels], axis=-1) * suv_factor
    )  # (column, row, slice), Bq/ml -> SUV
    first = slices[0]
    row_dir, col_dir = (
        np.asarray(first.ImageOrientationPatient[:3], float),
        np.asarray(first.ImageOrientationPatient[3:], float),
    )
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    origin = np.asarray(first.ImagePositionPatient, float)
    slice_step = (np.asarray(slices[-1].ImagePositionPatient, float) - origin) / max(
        len(slices) - 1, 1
    )
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = slice_step
    lps[:3, 3] = origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return PetImage(
        array.astype(np.float32),
        affine,
        units="SUVbw",
        metadata={"source": str(folder), "format": "dicom"},
    )


def compare_mip(
    output: str | os.PathLike,
    real_dir: str | os.PathLike = STS001_DIR,
    seed: int = 2,
    window: tuple[float, float] = DEFAULT_WINDOW,
    phantom_config=None,
) -> Path:
    """A synthetic phantom's coronal MIP beside the real STS_001 whole-body scan, same SUV window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seganypet.synth.phantom import PhantomConfig, generate_phantom

    real = read_pet_series(real_dir, STS001_SUV_FACTOR)
    phantom = generate_phantom(seed, phantom_config or PhantomConfig())
    spacing = phantom.image.spacing
    params = phantom.parameters
    synthetic_title = (
        f"seganypet.synth seed {seed}\n{spacing[0]:.2f}x{spacing[2]:.2f} mm, PSF "
        f"{params['acquisition']['psf_fwhm_mm'][0]:.1f} mm, {len(phantom.lesions)} lesions"
    )
    real_spacing = real.spacing
    real_title = f"STS_001 (TCIA soft-tissue sarcoma), real\n{real_spacing[0]:.2f}x{real_spacing[2]:.2f} mm, GE Discovery ST"
    extents = [
        np.asarray(coronal_mip(img)[0].shape) * np.asarray(img.spacing)[[2, 0]]
        for img in (phantom.image, real)
    ]
    tallest = max(e[0] for e in extents)
    fig, axes = plt.subplots(
        1, 2, figsize=(10, 9), gridspec_kw={"width_ratios": [e[1] for e in extents]}
    )
    show_mip(axes[0], phantom.image, synthetic_title, window)
    show_mip(axes[1], real, real_title, window)
    for ax in axes:
        ax.set_ylim(tallest, 0.0)  # same millimetre scale, heads aligned at the top
    fig.suptitle(f"Coronal MIP, SUV {window[0]:g}-{window[1]:g}, inverted grey", fontsize=11)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.96))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=compare_mip.__doc__)
    parser.add_argument("output", nargs="?", default="docs/img/synth_vs_sts001_mip.png")
    parser.add_argument(
        "--real", default=str(STS001_DIR), help="folder of the real STS_001 DICOM PET series"
    )
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    print(compare_mip(args.output, args.real, args.seed))


if __name__ == "__main__":
    main()
