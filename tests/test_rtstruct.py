"""RTSTRUCT reading and rasterisation, on real sarcoma contours and on synthetic structure sets."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from conftest import shared_path
from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.io.dicom import read_dicom_image
from seganypet.io.masks import load_mask
from seganypet.io.rtstruct import (
    CONTOUR_RULES,
    list_rtstruct_roi_names,
    list_rtstruct_rois,
    rasterise_rtstruct,
)

CROPS = ("STS_001", "STS_002", "STS_003")
LPS = np.array([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def wholebody() -> PetImage:
    return read_dicom_image(shared_path("data", "sts001_wholebody_ge", "image"))


def contour_volume_ml(path: Path, roi_name: str, slice_thickness_mm: float) -> float:
    """Polygon area (shoelace, even-odd over each plane's polygons assumed disjoint) x thickness."""
    dataset = pydicom.dcmread(path)
    number = next(
        int(r.ROINumber) for r in dataset.StructureSetROISequence if r.ROIName == roi_name
    )
    contours = next(c for c in dataset.ROIContourSequence if int(c.ReferencedROINumber) == number)
    area_mm2 = 0.0
    for contour in contours.ContourSequence:
        points = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
        x, y = points[:, 0], points[:, 1]
        area_mm2 += 0.5 * abs(x @ np.roll(y, -1) - y @ np.roll(x, -1))
    return area_mm2 * slice_thickness_mm / 1000.0


# --- real data -------------------------------------------------------------------------------


def test_lists_roi_names_in_file_order():
    path = shared_path("data", "sts001_wholebody_ge", "mask", "1-1.dcm")
    assert list_rtstruct_roi_names(path) == ["GTV_Mass", "GTV_Edema"]
    rois = list_rtstruct_rois(path)
    assert [r.contour_count for r in rois] == [32, 43]


def test_wholebody_gtv_mass_volume_matches_its_contours(wholebody):
    path = shared_path("data", "sts001_wholebody_ge", "mask", "1-1.dcm")
    masks = rasterise_rtstruct(path, wholebody, ["GTV_Mass"])
    assert list(masks) == ["GTV_Mass"]
    volume_ml = masks["GTV_Mass"].sum() * wholebody.voxel_volume_ml
    # The contours enclose 365 ml (polygon areas x 3.27 mm); voxel-centre rasterisation must agree.
    # (The 431 ml quoted in the data README is not reproduced by centre inclusion: counting every
    # voxel the polygons touch, rule="any-overlap", gives 429 ml; see below. MIRP's IBSI mask
    # agrees with the centre rule voxel for voxel.)
    expected_ml = contour_volume_ml(path, "GTV_Mass", wholebody.spacing[2])
    assert expected_ml == pytest.approx(365.2, abs=1.0)
    assert volume_ml == pytest.approx(expected_ml, rel=0.02)
    assert volume_ml == pytest.approx(366.1, rel=0.05)


def test_wholebody_mask_equals_ibsi_crop_mask_at_the_crop_offset(wholebody):
    """The IBSI crop is a sub-grid of the whole-body grid: the masks must coincide there."""
    path = shared_path("data", "sts001_wholebody_ge", "mask", "1-1.dcm")
    mass = rasterise_rtstruct(path, wholebody, ["GTV_Mass"])["GTV_Mass"]
    crop = nib.load(shared_path("data", "ibsi_sts_crops", "STS_001", "PET_mask.nii.gz"))
    offset = np.rint(wholebody.world_to_voxel(crop.affine[:3, 3])).astype(int)
    np.testing.assert_allclose(crop.affine[:3, :3], wholebody.affine[:3, :3], atol=1e-3)
    reference = np.asarray(crop.dataobj) > 0
    window = tuple(slice(o, o + s) for o, s in zip(offset, reference.shape, strict=True))
    np.testing.assert_array_equal(mass[window], reference)
    assert mass.sum() == reference.sum()  # nothing outside the crop


def test_wholebody_gtv_mass_volume_by_each_rule(wholebody):
    """Centre inclusion gives the IBSI 366 ml; any-overlap the ~431 ml quoted, as a superset.

    (How long each rule takes is measured by ``seganypet bench --rtstruct``, not asserted.)"""
    path = shared_path("data", "sts001_wholebody_ge", "mask", "1-1.dcm")
    masks = {}
    for rule in CONTOUR_RULES:
        masks[rule] = rasterise_rtstruct(path, wholebody, ["GTV_Mass"], rule=rule)["GTV_Mass"]
    centre_ml = masks["centre"].sum() * wholebody.voxel_volume_ml
    any_overlap_ml = masks["any-overlap"].sum() * wholebody.voxel_volume_ml
    assert masks["centre"].sum() == 5095
    assert centre_ml == pytest.approx(366.0, rel=0.01)
    assert any_overlap_ml == pytest.approx(431.0, rel=0.05)
    assert not (masks["centre"] & ~masks["any-overlap"]).any()
    # The extra voxels are the boundary ring: each touches a voxel of the centre mask in-plane.
    extra = masks["any-overlap"] & ~masks["centre"]
    near = np.zeros_like(extra)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            near |= np.roll(masks["centre"], (di, dj), axis=(0, 1))
    assert not (extra & ~near & masks["centre"].any(axis=(0, 1))).any()


def test_edema_surrounds_mass(wholebody):
    path = shared_path("data", "sts001_wholebody_ge", "mask", "1-1.dcm")
    masks = rasterise_rtstruct(path, wholebody)
    assert list(masks) == ["GTV_Mass", "GTV_Edema"]
    assert not (masks["GTV_Mass"] & ~masks["GTV_Edema"]).any()
    edema_ml = masks["GTV_Edema"].sum() * wholebody.voxel_volume_ml
    assert edema_ml == pytest.approx(contour_volume_ml(path, "GTV_Edema", 3.27), rel=0.02)


@pytest.mark.parametrize("case", CROPS)
def test_crop_rtstruct_matches_ibsi_nifti_mask(case):
    folder = shared_path("data", "sts_crops_dicom_gml", case)
    image = read_dicom_image(folder / "image")
    reference_nifti = nib.load(shared_path("data", "ibsi_sts_crops", case, "PET_mask.nii.gz"))
    assert image.same_grid(reference_nifti.shape, reference_nifti.affine), "grids must correspond"
    masks = rasterise_rtstruct(folder / "mask" / "RS.dcm", image)
    assert list(masks) == ["GTV_Mass_PET"]
    mask = masks["GTV_Mass_PET"]
    reference = np.asarray(reference_nifti.dataobj) > 0
    dice = 2 * (mask & reference).sum() / (mask.sum() + reference.sum())
    assert dice > 0.99


# --- synthetic structure sets ----------------------------------------------------------------

FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.1"


def synthetic_image(with_headers: bool = True) -> PetImage:
    """A 20 x 16 x 10 grid, 2 x 2 x 3 mm, axial, DICOM-like (x and y run to patient left/posterior)."""
    affine = np.array([[-2.0, 0, 0, 10], [0, -2.0, 0, 20], [0, 0, 3.0, -30], [0, 0, 0, 1]])
    headers = None
    if with_headers:
        header = Dataset()
        header.FrameOfReferenceUID = FRAME_OF_REFERENCE
        headers = [header]
    return PetImage(np.zeros((20, 16, 10), np.float32), affine, dicom_headers=headers)


def lps_polygon(
    image: PetImage, slice_index: float, corners_ij: list[tuple[float, float]]
) -> np.ndarray:
    """A polygon given in voxel indices (i, j) on a slice, as LPS patient coordinates."""
    ijk = np.array([[i, j, slice_index] for i, j in corners_ij], dtype=np.float64)
    return image.voxel_to_world(ijk) * LPS


def write_rtstruct(
    path: Path,
    rois: dict[str, list[np.ndarray]],
    frame_of_reference: str = FRAME_OF_REFERENCE,
    geometric_type: str = "CLOSED_PLANAR",
) -> Path:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Modality = "RTSTRUCT"
    dataset.StructureSetROISequence = Sequence()
    dataset.ROIContourSequence = Sequence()
    for number, (name, polygons) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = frame_of_reference
        dataset.StructureSetROISequence.append(roi)
        contours = Dataset()
        contours.ReferencedROINumber = number
        contours.ContourSequence = Sequence()
        for polygon in polygons:
            contour = Dataset()
            contour.ContourGeometricType = geometric_type
            contour.NumberOfContourPoints = len(polygon)
            contour.ContourData = [f"{v:.6f}" for v in np.asarray(polygon).ravel()]
            contours.ContourSequence.append(contour)
        dataset.ROIContourSequence.append(contours)
    dataset.save_as(path, enforce_file_format=True)
    return path


def square(i0: float, i1: float, j0: float, j1: float) -> list[tuple[float, float]]:
    return [(i0, j0), (i1, j0), (i1, j1), (i0, j1)]


def test_square_fills_the_voxel_centres_inside_it(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(
        tmp_path / "rs.dcm", {"box": [lps_polygon(image, 4, square(2.5, 6.5, 3.5, 8.5))]}
    )
    mask = rasterise_rtstruct(path, image)["box"]
    expected = np.zeros(image.shape, bool)
    expected[3:7, 4:9, 4] = True
    np.testing.assert_array_equal(mask, expected)


def clipped_area(polygon: np.ndarray, i: int, j: int) -> float:
    """Exact area of a convex polygon (voxel indices) inside voxel (i, j)'s square, by clipping."""
    points = [tuple(p) for p in polygon]
    for axis, bound, keep_above in (
        (0, i - 0.5, 1),
        (0, i + 0.5, 0),
        (1, j - 0.5, 1),
        (1, j + 0.5, 0),
    ):
        clipped = []
        for k, end in enumerate(points):
            start = points[k - 1]
            start_in = (start[axis] >= bound) if keep_above else (start[axis] <= bound)
            end_in = (end[axis] >= bound) if keep_above else (end[axis] <= bound)
            if start_in != end_in:
                t = (bound - start[axis]) / (end[axis] - start[axis])
                clipped.append(tuple(s + t * (e - s) for s, e in zip(start, end, strict=True)))
            if end_in:
                clipped.append(end)
        points = clipped
        if len(points) < 3:
            return 0.0
    x, y = np.array(points).T
    return 0.5 * abs(x @ np.roll(y, -1) - y @ np.roll(x, -1))


def rasterise_one(tmp_path, image, polygons, rule):
    path = write_rtstruct(tmp_path / f"rs-{rule}.dcm", {"roi": polygons})
    return rasterise_rtstruct(path, image, rule=rule)["roi"]


def grid_ij(image):
    return np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")


@pytest.mark.parametrize(
    ("rule", "i_range", "j_range"), [("centre", (3, 7), (4, 9)), ("any-overlap", (2, 8), (3, 9))]
)
def test_offset_square_by_each_rule(tmp_path, rule, i_range, j_range):
    """Square i in [2.2, 6.7], j in [3.3, 8.5]: centres 3..6 x 4..8; touched squares 2..7 x 3..8.

    Its j = 8.5 edge runs along the border of voxels 8 and 9, so it adds no voxel 9.
    """
    image = synthetic_image()
    mask = rasterise_one(tmp_path, image, [lps_polygon(image, 4, square(2.2, 6.7, 3.3, 8.5))], rule)
    expected = np.zeros(image.shape, bool)
    expected[slice(*i_range), slice(*j_range), 4] = True
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("jitter", [0.0, 5e-7])
@pytest.mark.parametrize("rule", CONTOUR_RULES)
def test_square_on_voxel_borders_is_the_same_by_both_rules(tmp_path, rule, jitter):
    """Edges along voxel borders enter no square; rounding of 5e-7 voxel outwards changes nothing."""
    image = synthetic_image()
    corners = square(2.5 - jitter, 6.5 + jitter, 3.5 - jitter, 8.5 + jitter)
    mask = rasterise_one(tmp_path, image, [lps_polygon(image, 4, corners)], rule)
    expected = np.zeros(image.shape, bool)
    expected[3:7, 4:9, 4] = True
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("rule", CONTOUR_RULES)
def test_triangle_by_each_rule(tmp_path, rule):
    """Legs at 2.2, hypotenuse i + j = 12.4: no centre or voxel corner lies on an edge."""
    image = synthetic_image()
    triangle = lps_polygon(image, 6, [(2.2, 2.2), (10.2, 2.2), (2.2, 10.2)])
    mask = rasterise_one(tmp_path, image, [triangle], rule)[..., 6]
    i, j = grid_ij(image)
    if rule == "centre":
        expected = (i >= 3) & (j >= 3) & (i + j <= 12)
    else:  # square [i -+ 1/2] x [j -+ 1/2] overlaps the triangle: separating axes i, j, i + j
        expected = (i >= 2) & (j >= 2) & (i <= 10) & (j <= 10) & (i + j - 1 < 12.4)
    np.testing.assert_array_equal(mask, expected)


def test_any_overlap_excludes_voxels_a_diagonal_touches_only_at_a_corner(tmp_path):
    """Hypotenuse i + j = 12 runs through voxel corners: the voxels beyond it only touch it."""
    image = synthetic_image()
    triangle = lps_polygon(image, 6, [(2.2, 2.2), (9.8, 2.2), (2.2, 9.8)])
    mask = rasterise_one(tmp_path, image, [triangle], "any-overlap")[..., 6]
    i, j = grid_ij(image)
    np.testing.assert_array_equal(mask, (i >= 2) & (j >= 2) & (i <= 10) & (j <= 10) & (i + j <= 12))


@pytest.mark.parametrize(("rule", "hole"), [("centre", (4, 8)), ("any-overlap", (5, 7))])
def test_hole_by_each_rule(tmp_path, rule, hole):
    """A hole 3.7..7.3 takes the centres 4..7 by the centre rule but only the squares it holds
    entirely (5..6) by any-overlap: the others overlap the ring with positive area."""
    image = synthetic_image()
    outer = lps_polygon(image, 2, square(0.5, 10.5, 0.5, 10.5))
    inner = lps_polygon(image, 2, square(3.7, 7.3, 3.7, 7.3))
    mask = rasterise_one(tmp_path, image, [outer, inner], rule)
    expected = np.zeros(image.shape, bool)
    expected[1:11, 1:11, 2] = True
    expected[slice(*hole), slice(*hole), 2] = False
    np.testing.assert_array_equal(mask, expected)


def test_any_overlap_is_positive_exact_overlap_area_and_contains_centre(tmp_path):
    """A rotated heptagon: any-overlap = voxels whose square it overlaps (by exact clipping)."""
    image = synthetic_image()
    angles = 0.3 + np.arange(7) * 2 * np.pi / 7
    heptagon = np.c_[9.3 + 6.1 * np.cos(angles), 7.6 + 5.3 * np.sin(angles)]
    path = write_rtstruct(tmp_path / "rs.dcm", {"hept": [lps_polygon(image, 5, heptagon.tolist())]})
    centre = rasterise_rtstruct(path, image)["hept"][..., 5]
    any_overlap = rasterise_rtstruct(path, image, rule="any-overlap")["hept"][..., 5]
    expected = np.array(
        [
            [clipped_area(heptagon, i, j) > 1e-9 for j in range(image.shape[1])]
            for i in range(image.shape[0])
        ]
    )
    np.testing.assert_array_equal(any_overlap, expected)
    assert not (centre & ~any_overlap).any()
    assert any_overlap.sum() > centre.sum()


def test_any_overlap_is_cut_at_the_grid_edge(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(
        tmp_path / "rs.dcm", {"edge": [lps_polygon(image, 9, square(15.5, 25.5, 10.3, 12.5))]}
    )
    with pytest.warns(UserWarning, match="extends beyond the image grid"):
        mask = rasterise_rtstruct(path, image, rule="any-overlap")["edge"]
    expected = np.zeros(image.shape, bool)
    expected[16:20, 10:13, 9] = True
    np.testing.assert_array_equal(mask, expected)


def test_load_mask_threads_the_contour_rule(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(
        tmp_path / "rs.dcm", {"box": [lps_polygon(image, 4, square(2.2, 6.7, 3.3, 8.5))]}
    )
    for rule in CONTOUR_RULES:
        labels, names = load_mask(path, image, contour_rule=rule)
        assert names == {1: "box"}
        np.testing.assert_array_equal(
            labels == 1, rasterise_rtstruct(path, image, rule=rule)["box"]
        )
    assert (load_mask(path, image)[0] > 0).sum() == 4 * 5


def test_unknown_contour_rule_is_an_input_error(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(tmp_path / "rs.dcm", {"box": [lps_polygon(image, 4, square(2, 5, 2, 5))]})
    with pytest.raises(InputError, match="unknown contour rasterisation rule 'touching'"):
        rasterise_rtstruct(path, image, rule="touching")
    with pytest.raises(InputError, match="choose one of centre, any-overlap"):
        load_mask(path, image, contour_rule="touching")


def test_hole_and_island_on_one_slice_by_even_odd(tmp_path):
    image = synthetic_image()
    outer = lps_polygon(image, 2, square(0.5, 10.5, 0.5, 10.5))
    hole = lps_polygon(image, 2, square(3.5, 6.5, 3.5, 6.5))
    island = lps_polygon(image, 2, square(13.5, 15.5, 12.5, 14.5))
    mask = rasterise_rtstruct(
        write_rtstruct(tmp_path / "rs.dcm", {"ring": [outer, hole, island]}), image
    )["ring"]
    expected = np.zeros(image.shape, bool)
    expected[1:11, 1:11, 2] = True
    expected[4:7, 4:7, 2] = False
    expected[14:16, 13:15, 2] = True
    np.testing.assert_array_equal(mask, expected)


def test_triangle_and_vertices_on_voxel_centres(tmp_path):
    """Vertices on scanlines count once; a diagonal edge through centres is handled consistently."""
    image = synthetic_image()
    triangle = lps_polygon(image, 0, [(2, 2), (12, 2), (2, 12)])
    mask = rasterise_rtstruct(write_rtstruct(tmp_path / "rs.dcm", {"tri": [triangle]}), image)[
        "tri"
    ][..., 0]
    i, j = np.meshgrid(np.arange(20), np.arange(16), indexing="ij")
    strictly_inside = (i > 2) & (j > 2) & (i + j < 14)
    on_boundary = ((i == 2) | (j == 2) | (i + j == 14)) & (i >= 2) & (j >= 2) & (i + j <= 14)
    assert (mask | ~strictly_inside).all()
    assert not (mask & ~(strictly_inside | on_boundary)).any()
    # half-open convention: of the boundary centres, those on the 'low' sides are in
    assert 0 < (mask & on_boundary).sum() < on_boundary.sum()


def test_world_coordinates_are_lps(tmp_path):
    """A contour around an LPS point lands on the voxel whose RAS centre is that point negated in x, y."""
    image = synthetic_image()
    voxel = np.array([5, 9, 7])
    centre_lps = image.voxel_to_world(voxel) * LPS
    offsets = np.array([[-1.5, -1.5, 0], [1.5, -1.5, 0], [1.5, 1.5, 0], [-1.5, 1.5, 0]])
    mask = rasterise_rtstruct(
        write_rtstruct(tmp_path / "rs.dcm", {"dot": [centre_lps + offsets]}), image
    )["dot"]
    assert np.argwhere(mask).tolist() == [voxel.tolist()]


def test_contour_between_slices_goes_to_the_nearest_with_a_warning(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(
        tmp_path / "rs.dcm", {"box": [lps_polygon(image, 3.4, square(2.5, 5.5, 2.5, 5.5))]}
    )
    with pytest.warns(UserWarning, match="off the image's slice centres"):
        mask = rasterise_rtstruct(path, image)["box"]
    assert np.unique(np.argwhere(mask)[:, 2]).tolist() == [3]


def test_roi_partly_outside_is_cut_with_a_warning(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(
        tmp_path / "rs.dcm",
        {
            "edge": [
                lps_polygon(image, 9, square(15.5, 25.5, 10.5, 12.5)),
                lps_polygon(image, 12, square(1, 3, 1, 3)),
            ]
        },
    )
    with pytest.warns(UserWarning, match="extends beyond the image grid"):
        mask = rasterise_rtstruct(path, image)["edge"]
    assert mask.sum() == 4 * 2


def test_roi_entirely_outside_is_an_input_error(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(
        tmp_path / "rs.dcm", {"far": [lps_polygon(image, 40, square(1, 5, 1, 5))]}
    )
    with pytest.raises(InputError, match="outside the image grid"):
        rasterise_rtstruct(path, image)


def test_frame_of_reference_mismatch_is_an_input_error(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(
        tmp_path / "rs.dcm",
        {"box": [lps_polygon(image, 4, square(2, 5, 2, 5))]},
        frame_of_reference="1.2.3.4",
    )
    with pytest.raises(InputError, match="Frame of Reference"):
        rasterise_rtstruct(path, image)


def test_image_without_dicom_headers_warns_that_frame_of_reference_is_unchecked(tmp_path):
    image = synthetic_image(with_headers=False)
    path = write_rtstruct(
        tmp_path / "rs.dcm", {"box": [lps_polygon(image, 4, square(1.5, 3.5, 1.5, 3.5))]}
    )
    with pytest.warns(UserWarning, match="cannot be checked"):
        mask = rasterise_rtstruct(path, image)["box"]
    assert mask.sum() == 4


def test_unknown_roi_name_lists_the_known_ones(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [lps_polygon(image, 4, square(2, 5, 2, 5))]})
    with pytest.raises(InputError, match="no ROI named 'PTV'.*'GTV'"):
        rasterise_rtstruct(path, image, ["PTV"])


def test_non_planar_contour_is_an_input_error(tmp_path):
    image = synthetic_image()
    tilted = lps_polygon(image, 0, square(2, 8, 2, 8))
    tilted[:, 2] += np.array([0.0, 0.0, 6.0, 6.0])
    path = write_rtstruct(tmp_path / "rs.dcm", {"tilted": [tilted]})
    with pytest.raises(InputError, match="not parallel"):
        rasterise_rtstruct(path, image)


def test_point_contours_are_ignored_with_a_warning(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(
        tmp_path / "rs.dcm",
        {"marker": [lps_polygon(image, 4, [(3, 3)] * 3)]},
        geometric_type="POINT",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = rasterise_rtstruct(path, image)["marker"]
    assert not mask.any()
    assert any("enclose no area" in str(w.message) for w in caught)


def test_a_file_that_is_not_an_rtstruct_is_an_input_error(tmp_path):
    image = synthetic_image()
    path = write_rtstruct(tmp_path / "rs.dcm", {"box": [lps_polygon(image, 4, square(2, 5, 2, 5))]})
    dataset = pydicom.dcmread(path)
    dataset.Modality = "PT"
    dataset.save_as(path)
    with pytest.raises(InputError, match="not an RTSTRUCT"):
        rasterise_rtstruct(path, image)
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(InputError, match="cannot read"):
        rasterise_rtstruct(tmp_path / "junk.dcm", image)
