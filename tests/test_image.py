import numpy as np
import pytest

from seganypet.errors import InputError
from seganypet.image import PetImage

OBLIQUE_PERMUTED_AFFINES = [
    np.diag([2.0, 3.0, 4.0, 1.0]),
    np.array([[0, 0, -3.0, 10], [-2.0, 0, 0, 5], [0, 4.0, 0, 1], [0, 0, 0, 1]]),
    np.array([[-4.0, 0, 0, 0], [0, -4.0, 0, 0], [0, 0, 3.27, -800], [0, 0, 0, 1]]),
]


@pytest.mark.parametrize("affine", OBLIQUE_PERMUTED_AFFINES)
def test_canonical_view_round_trips_exactly(affine):
    rng = np.random.default_rng(0)
    image = PetImage(rng.random((5, 6, 7)), affine)
    view = image.canonical()
    codes = np.sign(np.diag(view.image.affine[:3, :3]))
    assert (codes > 0).all(), "canonical axes must run R, A, S"
    np.testing.assert_array_equal(view.to_input(view.image.array), image.array)
    for ijk in [(0, 0, 0), (4, 5, 6), (1, 2, 3)]:
        c = view.voxel_from_input(np.array(ijk, float))
        assert view.image.array[tuple(np.rint(c).astype(int))] == image.array[ijk]
        np.testing.assert_allclose(view.voxel_to_input(c), ijk, atol=1e-9)
        np.testing.assert_allclose(
            view.image.voxel_to_world(c), image.voxel_to_world(ijk), atol=1e-9
        )


def test_spacing_and_voxel_volume_follow_affine():
    image = PetImage(np.zeros((2, 2, 2)), np.diag([4.0, 4.0, 2.5, 1.0]))
    assert image.spacing == (4.0, 4.0, 2.5)
    assert image.voxel_volume_ml == pytest.approx(0.04)


def test_rejects_non_3d_and_degenerate_geometry():
    with pytest.raises(InputError, match="3D"):
        PetImage(np.zeros((2, 2)), np.eye(4))
    with pytest.raises(InputError, match="degenerate"):
        PetImage(np.zeros((2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))


def test_the_content_digest_names_the_voxel_values_whatever_their_axis_order():
    rng = np.random.default_rng(0)
    array = rng.random((6, 5, 4), dtype=np.float32)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    image = PetImage(array, affine)
    flipped_affine = affine.copy()
    flipped_affine[0, 0] = -2.0
    flipped_affine[0, 3] = 2.0 * 5
    flipped = PetImage(array[::-1].copy(), flipped_affine)  # the same scan stored mirrored
    assert np.allclose(flipped.voxel_to_world([5, 0, 0]), image.voxel_to_world([0, 0, 0]))
    assert flipped.content_digest() == image.content_digest()
    changed = array.copy()
    changed[3, 2, 1] += 1e-3
    assert PetImage(changed, affine).content_digest() != image.content_digest()
    assert PetImage(array.reshape(5, 6, 4), affine).content_digest() != image.content_digest()
