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
