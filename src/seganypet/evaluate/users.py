"""The simulated users of the evaluation protocols (:mod:`seganypet.evaluate.protocols`
describes what each does): which prompts come at which step, from the truth and the current
prediction."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from seganypet.evaluate.protocols import (
    AUTOPET_HOT_PERCENTILE,
    FIRST_CLICK_PROTOCOLS,
    PROTOCOLS,
    check_first_click,
)
from seganypet.prompts import (
    Box,
    Point,
    Prompt,
    bounding_box,
    hottest_voxel,
    most_interior_voxel,
    next_click_at_error_centre,
    next_click_at_random_error,
    next_scribble_at_error,
    scribble_in_region,
)

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)

Voxel = tuple[int, int, int]
Spacing = tuple[float, float, float]


@dataclass(frozen=True)
class Interaction:
    """The prompts a simulated user gives at one step (none when nothing is left to correct)."""

    prompts: tuple[Prompt, ...]

    @property
    def prompt_type(self) -> str:
        if not self.prompts:
            return "none"
        return "/".join(p.type_name for p in self.prompts)

    def describe(self) -> str:
        return " ".join(p.describe() for p in self.prompts)


def _fmt(voxel: Sequence[float]) -> str:
    return "(" + " ".join(f"{v:g}" for v in voxel) + ")"


def object_rng(seed: int, case: str, object_name: str) -> np.random.Generator:
    """The random stream of one object: the same whichever objects ran before it."""
    return np.random.default_rng([int(seed), zlib.crc32(f"{case}/{object_name}".encode())])


def first_click_voxel(
    rule: str,
    truth: np.ndarray,
    spacing: Spacing,
    suv: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> Voxel:
    """Where a ``--first-click`` rule (:data:`FIRST_CLICKS`) clicks the object first."""
    check_first_click(rule, FIRST_CLICK_PROTOCOLS[0])
    if rule == "interior":
        return most_interior_voxel(truth, spacing)  # type: ignore[return-value]
    if rule == "hottest":
        if suv is None:
            raise ValueError("the hottest first click needs the SUV image")
        return hottest_voxel(suv, truth)
    if rng is None:  # random
        raise ValueError("the random first click needs a random stream")
    voxels = np.argwhere(truth)
    return _ints(voxels[rng.integers(len(voxels))])


class SimulatedUser:
    """A protocol's user for one object. ``interaction(step, prediction)`` gives the prompts.

    ``first_click`` is the voxel of the first click (the most interior one when not given).
    """

    def __init__(self, truth: np.ndarray, spacing: Spacing, first_click: Voxel | None = None):
        self.truth = np.asarray(truth, dtype=bool)
        if not self.truth.any():
            raise ValueError("a simulated user needs a non-empty object")
        self.spacing = tuple(float(s) for s in spacing)
        self._first_click = first_click

    @property
    def baseline_seed(self) -> Voxel:
        """The voxel the classical baselines grow from: the protocol's first click."""
        if self._first_click is None:
            self._first_click = most_interior_voxel(self.truth, self.spacing)  # type: ignore[arg-type]
        return self._first_click

    #: The protocol (:data:`~seganypet.evaluate.protocols.PROTOCOLS`) this user simulates.
    protocol: str = ""

    @classmethod
    def for_object(
        cls,
        truth: np.ndarray,
        spacing: Spacing,
        *,
        rng: np.random.Generator,
        suv: np.ndarray | None,
        steps: int,
        first_click: str,
    ) -> SimulatedUser:
        """The user for one object (what each protocol needs of these it takes)."""
        if PROTOCOLS[cls.protocol].takes_first_click:
            return cls(truth, spacing, first_click_voxel(first_click, truth, spacing, suv, rng))
        return cls(truth, spacing)

    def interaction(self, step: int, prediction: np.ndarray) -> Interaction:
        raise NotImplementedError

    def _error_centre_click(self, prediction: np.ndarray) -> Interaction:
        box, offset = _error_box(prediction, self.truth)
        click = next_click_at_error_centre(prediction[box], self.truth[box], self.spacing)
        return Interaction(() if click is None else (_shifted(click, offset),))


class ErrorCentreUser(SimulatedUser):
    """``clicks``: the first-click voxel, then the centre of the largest error."""

    protocol = "clicks"

    def interaction(self, step: int, prediction: np.ndarray) -> Interaction:
        if step == 1:
            return Interaction((Point(_floats(self.baseline_seed), True),))
        return self._error_centre_click(prediction)


class RandomErrorUser(SimulatedUser):
    """``clicks-random``: a random voxel of the error at every step (SAM-Med3D)."""

    protocol = "clicks-random"

    @classmethod
    def for_object(cls, truth, spacing, *, rng, suv, steps, first_click) -> RandomErrorUser:
        return cls(truth, spacing, rng)

    def __init__(self, truth: np.ndarray, spacing: Spacing, rng: np.random.Generator):
        super().__init__(truth, spacing)
        self.rng = rng
        first = next_click_at_random_error(np.zeros_like(self.truth), self.truth, rng)
        assert first is not None
        self.first_click = first

    @property
    def baseline_seed(self) -> Voxel:
        return _ints(self.first_click.voxel)

    def interaction(self, step: int, prediction: np.ndarray) -> Interaction:
        if step == 1:
            return Interaction((self.first_click,))
        box, offset = _error_box(prediction, self.truth)
        click = next_click_at_random_error(prediction[box], self.truth[box], self.rng)
        return Interaction(() if click is None else (_shifted(click, offset),))


class BoxThenClicksUser(SimulatedUser):
    """``box-clicks``: the object's bounding box, then clicks at the error centres."""

    protocol = "box-clicks"

    def interaction(self, step: int, prediction: np.ndarray) -> Interaction:
        if step == 1:
            return Interaction((bounding_box(self.truth),))
        return self._error_centre_click(prediction)


class ScribbleUser(SimulatedUser):
    """``scribbles``: a stroke through the object, then through the largest error."""

    protocol = "scribbles"

    def interaction(self, step: int, prediction: np.ndarray) -> Interaction:
        if step == 1:
            return Interaction((scribble_in_region(self.truth, True, self.spacing),))
        box, offset = _error_box(prediction, self.truth)
        stroke = next_scribble_at_error(prediction[box], self.truth[box], self.spacing)
        if stroke is None:
            return Interaction(())
        return Interaction((stroke.mapped(lambda voxel: voxel + offset),))


class AutoPetUser(SimulatedUser):
    """``autopet``: the k-th pre-simulated tumour and background clicks at step k."""

    protocol = "autopet"

    @classmethod
    def for_object(cls, truth, spacing, *, rng, suv, steps, first_click) -> AutoPetUser:
        if suv is None:
            raise ValueError("the autopet protocol needs the SUV image for its background clicks")
        return cls(truth, spacing, suv, steps, rng)

    def __init__(
        self,
        truth: np.ndarray,
        spacing: Spacing,
        suv: np.ndarray,
        count: int,
        rng: np.random.Generator,
    ):
        super().__init__(truth, spacing)
        self.tumour, self.background = autopet_clicks(self.truth, suv, count, rng)
        self._first_click = self.tumour[0]

    def interaction(self, step: int, prediction: np.ndarray) -> Interaction:
        prompts: list[Point | Box] = []
        if step <= len(self.tumour):
            prompts.append(Point(_floats(self.tumour[step - 1]), True))
        if step <= len(self.background):
            prompts.append(Point(_floats(self.background[step - 1]), False))
        return Interaction(tuple(prompts))


def make_user(
    protocol: str,
    truth: np.ndarray,
    spacing: Spacing,
    *,
    rng: np.random.Generator,
    suv: np.ndarray | None = None,
    steps: int = 1,
    first_click: str = "interior",
) -> SimulatedUser:
    """The simulated user of ``protocol`` for one object.

    ``suv`` is needed by ``autopet`` and by the ``hottest`` first click; ``first_click`` (one of
    :data:`FIRST_CLICKS`) applies to the :data:`FIRST_CLICK_PROTOCOLS`.
    """
    check_first_click(first_click, protocol)
    return USERS[protocol].for_object(
        truth, spacing, rng=rng, suv=suv, steps=steps, first_click=first_click
    )


#: Each protocol's user.
USERS: dict[str, type[SimulatedUser]] = {
    user.protocol: user
    for user in (ErrorCentreUser, RandomErrorUser, BoxThenClicksUser, ScribbleUser, AutoPetUser)
}


# ------------------------------------------------------------------------------ autoPET clicks


def autopet_clicks(
    truth: np.ndarray, suv: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[list[Voxel], list[Voxel]]:
    """``count`` tumour clicks and up to ``count`` background clicks (see the module's rule).

    ``truth`` is every lesion voxel of the case; the background clicks go to the hot components
    outside it (none when nothing outside is hotter than its 99.75th percentile).
    """
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        raise ValueError("cannot simulate tumour clicks in an empty object")
    if count < 1:
        raise ValueError("the click budget must be at least 1")
    suv = np.asarray(suv)
    outside = suv[~truth]
    hot = np.zeros_like(truth)
    if outside.size:
        hot = (suv > np.percentile(outside, AUTOPET_HOT_PERCENTILE)) & ~truth
    return _component_clicks(truth, count, rng), _component_clicks(hot, count, rng)


def _component_clicks(mask: np.ndarray, count: int, rng: np.random.Generator) -> list[Voxel]:
    """EDT centres of up to ``count`` random components, then their border voxels in turn."""
    if not mask.any():
        return []
    components, number = ndimage.label(mask, structure=CONNECTIVITY_26)
    boxes = ndimage.find_objects(components)
    drawn = rng.permutation(number)[: min(count, number)]
    distances = []
    clicks: list[Voxel] = []
    for index in drawn:
        box = boxes[index]
        inside = components[box] == index + 1
        distance = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1, 1:-1]
        distances.append((box, inside, distance))
        centre = np.unravel_index(int(np.argmax(distance)), distance.shape)
        clicks.append(_ints(np.asarray(centre) + [s.start for s in box]))
    turn = 0
    while len(clicks) < count:
        box, inside, distance = distances[turn % len(distances)]
        border = np.argwhere(inside & (distance == distance[inside].min()))
        voxel = border[rng.integers(len(border))]
        clicks.append(_ints(voxel + [s.start for s in box]))
        turn += 1
    return clicks


# ------------------------------------------------------------------------------ helpers


def _error_box(prediction: np.ndarray, truth: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """The bounding box of prediction and truth, one voxel wider: the error lies inside it.

    The simulated user's answer on this box equals its answer on the whole image (the error's
    components, their EDT and the scan order of their voxels are the same), at a fraction of
    the cost on a whole-body image.
    """
    box = _padded_box(np.asarray(prediction, bool) | truth, np.ones(3, int), truth.shape)
    return box, np.array([s.start for s in box], dtype=float)


def _padded_box(mask: np.ndarray, margin: np.ndarray, shape: Sequence[int]) -> tuple[slice, ...]:
    where = np.argwhere(mask)
    lo = np.maximum(where.min(0) - margin, 0)
    hi = np.minimum(where.max(0) + margin + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _shifted(click: Point, offset: np.ndarray) -> Point:
    return Point(_floats(np.asarray(click.voxel) + offset), click.positive)


def _floats(voxel: Sequence[float]) -> tuple[float, float, float]:
    return (float(voxel[0]), float(voxel[1]), float(voxel[2]))


def _ints(voxel: Sequence[float]) -> Voxel:
    return (int(round(voxel[0])), int(round(voxel[1])), int(round(voxel[2])))
