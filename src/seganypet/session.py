"""The interactive session: one image, objects segmented from clicks, boxes and masks.

The user's prompts are voxel indices of the input image (or mm, converted by the caller through
``PetImage.world_to_voxel``). Inside, the image is viewed in RAS+ orientation (no resampling), and
each object is predicted in one or more *tiles*: cubes of the network's input size at the
network's spacing, sampled from the image around a prompt. A tile's embedding is computed once and
cached; every later click only runs the prompt encoder and mask decoder, feeding back that tile's
previous low-resolution logits, as the network was trained.

An object larger than one tile touches the tile's border. The tile is then moved onto the object,
and if the object is still cut, neighbouring tiles overlapping by half are added and seeded from
the part of the mask they share; their logits are blended with weights that fall to zero at each
tile's border, so the result has no seams.

A small object is segmented at a finer spacing. When the first click of an object gives a mask
under :data:`SMALL_OBJECT_ML`, the object is predicted again in a tile sampled at half the
network's spacing (never finer than :data:`FINEST_ZOOM_SPACING_MM`), so that the network sees the
lesion twice as large and its low-resolution logits describe it in twice the detail; later
prompts of that object use that spacing, until a positive click, or a box, reaches beyond its fine
tiles: the object is then larger than its first mask said, and it returns to the network's own
spacing. Networks already at 1.5 mm (``vit_b_ori``) never zoom.
Given a ``small_object_network`` (a model trained at a fine spacing for small lesions), the
session hands such an object to it instead, at that network's own spacing.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from seganypet.errors import InputError, plain
from seganypet.image import CanonicalView, PetImage
from seganypet.model.config import normalise_crop
from seganypet.model.network import PromptableNetwork, point_label
from seganypet.prompts import Box, MaskPrompt, Point, Prompt
from seganypet.tiling import (
    CERTAIN_LOGIT,
    Tile,
    blend,
    cover_whole_object,
    grid,
    low_res_from_canonical,
    sample_volume,
    tile_around,
)

#: A first click whose mask is smaller than this (ml) is predicted again at a finer spacing.
SMALL_OBJECT_ML = 10.0
#: The finest spacing a zoomed tile samples (mm), and the largest zoom.
FINEST_ZOOM_SPACING_MM = 1.5
MAX_ZOOM = 2.0


@dataclass
class SegmentedObject:
    name: str
    prompts: list[Prompt] = field(default_factory=list)
    tiles: list[Tile] = field(default_factory=list)
    prior: np.ndarray | None = None  # canonical mask given by add_mask
    logits: np.ndarray | None = None  # canonical blended logits
    zoom: float = 1.0  # tiles sample at the network's spacing / zoom (small objects: > 1)
    fine: bool = False  # handed to the session's small-object network

    def snapshot(self) -> SegmentedObject:
        """A copy for the undo history. Logits the tiles can reproduce are left out to save
        memory (a whole-body array per click); :meth:`Session.undo` blends them again."""
        reproducible = any(t.decoded for t in self.tiles)
        return replace(
            self,
            prompts=list(self.prompts),
            tiles=[replace(t, seed_points=list(t.seed_points)) for t in self.tiles],
            logits=None if reproducible else self.logits,
        )


def refuse_without_uptake(image: PetImage) -> None:
    """An image whose voxels are all equal (all zero: an empty frame, a mask) holds nothing to
    segment; a model would return an arbitrary blob for it."""
    values = image.array
    highest, lowest = float(values.max()), float(values.min())
    if highest <= 0 or highest == lowest:
        what = f"every voxel is {plain(highest)}" if highest == lowest else "no voxel is above 0"
        raise InputError(
            f"the image holds no uptake ({what}); check that this is the PET image in SUV, "
            "not a mask, an empty frame or a blank export"
        )


class Session:
    """Interactive promptable segmentation of one PET image, shaped like nnInteractive's session.

    >>> session = Session(network)
    >>> session.set_image(image)
    >>> session.add_point((60, 72, 101))               # voxel indices of the input array
    >>> session.add_point((64, 70, 99), positive=False)
    >>> mask = session.mask                            # bool, on the input grid
    """

    def __init__(
        self,
        network: PromptableNetwork,
        max_tiles: int = 12,
        embedding_cache_size: int = 16,
        zoom_small_objects: bool = True,
        small_object_network: PromptableNetwork | None = None,
    ):
        self.network = network
        self.small_object_network = small_object_network
        self.zoom_small_objects = zoom_small_objects
        self.max_tiles = max_tiles
        self.embedding_cache_size = embedding_cache_size
        self._input_image: PetImage | None = None
        self._view: CanonicalView | None = None
        self._volume: torch.Tensor | None = None
        self._embeddings: OrderedDict[tuple[float, ...], Any] = OrderedDict()
        self.objects: list[SegmentedObject] = []
        self._current = -1
        self._history: list[tuple[int, SegmentedObject]] = []

    # ----------------------------------------------------------------- image and objects
    def set_image(self, image: PetImage) -> None:
        if not image.is_suv:
            raise InputError(f"the session needs an image in SUV, this one is in {image.units}")
        refuse_without_uptake(image)
        self._input_image = image
        self._view = image.canonical()
        self._volume = torch.from_numpy(self._view.image.array)
        self._embeddings.clear()
        self.objects = []
        self._history = []
        self.new_object("object 1")

    @property
    def image(self) -> PetImage:
        """The image as given to :meth:`set_image`, on its own grid (masks lie on this grid)."""
        self._require_image()
        return self._input_image

    def new_object(self, name: str | None = None) -> SegmentedObject:
        """Start a new object; the ones before it keep their masks."""
        self._require_image()
        obj = SegmentedObject(name or f"object {len(self.objects) + 1}")
        self.objects.append(obj)
        self._current = len(self.objects) - 1
        return obj

    def select_object(self, index: int) -> None:
        if not 0 <= index < len(self.objects):
            raise InputError(f"there is no object {index}; objects are 0..{len(self.objects) - 1}")
        self._current = index

    @property
    def current(self) -> SegmentedObject:
        if not self.objects:
            raise InputError("no image is set; call set_image first")
        return self.objects[self._current]

    @property
    def current_index(self) -> int:
        """The index of the current object in :attr:`objects`."""
        self.current  # noqa: B018 (refuses before set_image)
        return self._current

    def rename_object(self, index: int, name: str) -> None:
        if not 0 <= index < len(self.objects):
            raise InputError(f"there is no object {index}; objects are 0..{len(self.objects) - 1}")
        if not isinstance(name, str) or not name.strip():
            raise InputError("an object's name must be a non-empty string")
        self.objects[index].name = name

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    # ----------------------------------------------------------------- prompts
    def add(self, prompt: Prompt) -> np.ndarray:
        """Add a prompt (voxel indices of the input array) to the current object. Returns its
        new mask on the input grid."""
        view = self._require_image()
        if not isinstance(prompt, Prompt):
            raise TypeError(f"a prompt is a seganypet.prompts.Prompt, got {type(prompt).__name__}")
        prompt.check_inside(view.input_shape)
        if not prompt.positive and not self.current.prompts:
            raise InputError(
                "the first prompt of an object must be a positive point, a box or a mask; "
                f"a negative {prompt.kind} has nothing to remove yet"
            )
        return self._apply(prompt)

    def add_point(self, voxel: Sequence[float], positive: bool = True) -> np.ndarray:
        """Add a click at a voxel of the input array (floats allowed). Returns the new mask."""
        return self.add(Point(voxel, positive))  # type: ignore[arg-type]

    def add_box(self, lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
        """Add a box given by two opposite corners (voxel indices of the input array, inclusive)."""
        return self.add(Box(lo, hi))  # type: ignore[arg-type]

    def add_mask(self, mask: np.ndarray) -> np.ndarray:
        """Seed or replace the current object with a mask on the input grid."""
        return self.add(MaskPrompt(mask))

    def undo(self) -> None:
        """Take back the last prompt (of whichever object it was given to)."""
        if not self._history:
            raise InputError("nothing to undo")
        index, previous = self._history.pop()
        if previous.logits is None and previous.tiles:
            self._blend(previous)
        self.objects[index] = previous
        self._current = index

    def reset(self) -> None:
        """Clear every prompt of the current object."""
        self._history.append((self._current, self.current.snapshot()))
        self.objects[self._current] = SegmentedObject(self.current.name)

    # ----------------------------------------------------------------- results
    @property
    def probabilities(self) -> np.ndarray:
        """Foreground probability of the current object on the input grid (float32)."""
        view = self._require_image()
        logits = self.current.logits
        if logits is None:
            return np.zeros(view.input_shape, np.float32)
        return view.to_input(1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    @property
    def mask(self) -> np.ndarray:
        """The current object's mask on the input grid."""
        return self.object_mask(self._current)

    def object_mask(self, index: int) -> np.ndarray:
        view = self._require_image()
        logits = self.objects[index].logits
        if logits is None:
            return np.zeros(view.input_shape, bool)
        return view.to_input(logits > 0)

    def label_map(self) -> tuple[np.ndarray, dict[int, str]]:
        """All objects as one label map on the input grid; a later object wins where they overlap."""
        view = self._require_image()
        labels = np.zeros(view.input_shape, np.uint16)
        names = {}
        for index, obj in enumerate(self.objects):
            if obj.logits is None:
                continue
            labels[self.object_mask(index)] = index + 1
            names[index + 1] = obj.name
        return labels, names

    # ----------------------------------------------------------------- internals
    def _require_image(self) -> CanonicalView:
        if self._view is None:
            raise InputError("no image is set; call set_image first")
        return self._view

    def _apply(self, prompt: Prompt) -> np.ndarray:
        self._history.append((self._current, self.current.snapshot()))
        obj = self.current
        obj.prompts.append(prompt)
        try:
            self._update(obj, prompt)
        except Exception:
            self.undo()
            raise
        return self.mask

    def _canonical(self, voxel: Sequence[float]) -> np.ndarray:
        return self._require_image().voxel_from_input(np.asarray(voxel, float))

    def _net(self, fine: bool) -> PromptableNetwork:
        if fine and self.small_object_network is not None:
            return self.small_object_network
        return self.network

    def _step(self, zoom: float = 1.0, fine: bool = False) -> np.ndarray:
        spacing = np.asarray(self._require_image().image.spacing)
        return np.asarray(self._net(fine).config.spacing_mm, float) / zoom / spacing

    def _small_object_zoom(self) -> float:
        """How much finer a small object's tiles sample (1: not at all)."""
        if not self.zoom_small_objects:
            return 1.0
        coarsest = min(self.network.config.spacing_mm)
        return float(np.clip(coarsest / FINEST_ZOOM_SPACING_MM, 1.0, MAX_ZOOM))

    def _volume_ml(self, obj: SegmentedObject) -> float:
        if obj.logits is None:
            return 0.0
        return float((obj.logits > 0).sum()) * self._require_image().image.voxel_volume_ml

    def _tile_size(self, fine: bool = False) -> int:
        sizes = set(self._net(fine).config.input_size)
        if len(sizes) != 1:
            raise ValueError("the session drives networks with a cubic input only")
        return sizes.pop()

    def _new_tile(self, centre: np.ndarray, step: np.ndarray, fine: bool = False) -> Tile:
        shape = self._require_image().image.shape
        return tile_around(centre, step, self._tile_size(fine), shape, fine)

    def _update(self, obj: SegmentedObject, prompt: Prompt) -> None:
        if prompt.seed_mask is not None:
            obj.prior = self._require_image().from_input(prompt.seed_mask)
            obj.logits = np.where(obj.prior, CERTAIN_LOGIT, -CERTAIN_LOGIT).astype(np.float32)
            centre = np.argwhere(obj.prior).mean(0)
            obj.tiles = [self._new_tile(centre, self._step(obj.zoom, obj.fine), obj.fine)]
            for tile in obj.tiles:
                tile.low_res_logits = self._low_res_from_canonical(tile, obj.logits)
            return

        anchor = self._canonical(prompt.anchor)
        rescaled = self._outgrew_small_scale(obj, prompt)
        if rescaled:
            self._return_to_main_scale(obj)
        margin = self._tile_size(obj.fine) / 8
        targets = [t for t in obj.tiles if t.contains(anchor, margin=margin)]
        if not targets:
            tile = self._new_tile(anchor, self._step(obj.zoom, obj.fine), obj.fine)
            if obj.logits is not None:
                tile.low_res_logits = self._low_res_from_canonical(tile, obj.logits)
            obj.tiles.append(tile)
            targets = [tile]
        for tile in targets:
            self._predict(obj, tile)
        if len(obj.prompts) == 1 or prompt.outlines_object or rescaled:
            self._cover_whole_object(obj, targets[0])
        self._blend(obj)
        if len(obj.prompts) == 1 and not prompt.outlines_object:
            self._zoom_into_small_object(obj, anchor)

    def _outgrew_small_scale(self, obj: SegmentedObject, prompt: Prompt) -> bool:
        """A positive prompt beyond every tile of an object at the small-object scale says the
        object is larger than its first mask: the fine tiles could never hold it."""
        if not (obj.fine or obj.zoom != 1.0) or not prompt.positive:
            return False
        vertices = [self._canonical(v) for v in prompt.vertices]
        return not any(all(t.contains(v) for v in vertices) for t in obj.tiles)

    def _return_to_main_scale(self, obj: SegmentedObject) -> None:
        """Predict the object again with the main network at its own spacing, from its first
        prompt, with the mask so far as the previous logits."""
        obj.zoom, obj.fine = 1.0, False
        centre = self._canonical(obj.prompts[0].anchor)
        tile = self._new_tile(centre, self._step())
        if obj.logits is not None:
            tile.low_res_logits = self._low_res_from_canonical(tile, obj.logits)
        obj.tiles = [tile]
        self._predict(obj, tile)
        self._cover_whole_object(obj, tile)

    def _zoom_into_small_object(self, obj: SegmentedObject, anchor: np.ndarray) -> None:
        """Predict a small object again at a finer spacing (by the small-object network when
        there is one, else by zooming this one); keep the coarse result if that fails."""
        fine = self.small_object_network is not None and self.zoom_small_objects
        zoom = 1.0 if fine else self._small_object_zoom()
        if (zoom <= 1.0 and not fine) or obj.logits is None:
            return
        if self._volume_ml(obj) >= SMALL_OBJECT_ML:
            return
        coarse = (obj.tiles, obj.logits, obj.zoom, obj.fine)
        obj.zoom, obj.fine = zoom, fine
        tile = self._new_tile(anchor, self._step(zoom, fine), fine)
        obj.tiles = [tile]
        self._predict(obj, tile)
        self._cover_whole_object(obj, tile)
        self._blend(obj)
        if obj.logits is None or not (obj.logits > 0).any():
            obj.tiles, obj.logits, obj.zoom, obj.fine = coarse

    def _predict(self, obj: SegmentedObject, tile: Tile) -> None:
        """Run the network on one tile with every prompt of the object that falls inside it."""
        network = self._net(tile.fine)
        points, labels, boxes = [], [], []
        for prompt in obj.prompts:
            for click in prompt.clicks():
                voxel = self._canonical(click.voxel)
                if tile.contains(voxel):
                    points.append(tile.to_crop(voxel))
                    labels.append(
                        point_label(click.positive, prompt.clicks_along_line, network.reads_strokes)
                    )
            corners = prompt.corners()
            if corners is not None:
                ends = np.stack([self._canonical(corners[0]), self._canonical(corners[1])])
                lo, hi = tile.to_crop(ends.min(0)), tile.to_crop(ends.max(0))
                lo = np.clip(lo, 0, tile.size - 1)
                hi = np.clip(hi, 0, tile.size - 1)
                if np.all(hi > lo):
                    boxes.append(np.stack([lo, hi]))
        for seed in tile.seed_points:
            points.append(tile.to_crop(seed.voxel))
            labels.append(point_label(seed.positive))
        if not points and not boxes:
            return
        embedding = self._embedding(tile)
        point_tensor = torch.tensor(np.asarray(points, np.float32).reshape(1, -1, 3))
        label_tensor = torch.tensor(np.asarray(labels, np.int64).reshape(1, -1))
        box_tensor = torch.tensor(np.asarray(boxes[-1:], np.float32)) if boxes else None
        with torch.inference_mode():
            low_res, _ = network.decode(
                embedding,
                point_tensor,
                label_tensor,
                boxes=box_tensor,
                mask_logits=tile.low_res_logits,
            )
        tile.low_res_logits = low_res.detach().float()
        tile.decoded = True

    def _embedding(self, tile: Tile) -> Any:
        key = tile.key
        if key in self._embeddings:
            self._embeddings.move_to_end(key)
            return self._embeddings[key]
        crop = self._crop(tile)
        with torch.inference_mode():
            embedding = self._net(tile.fine).embed(crop)
        self._embeddings[key] = embedding
        while len(self._embeddings) > self.embedding_cache_size:
            self._embeddings.popitem(last=False)
        return embedding

    def _crop(self, tile: Tile) -> torch.Tensor:
        axes = [
            torch.tensor(tile.origin[a] + np.arange(tile.size) * tile.step[a], dtype=torch.float32)
            for a in range(3)
        ]
        crop = sample_volume(self._volume, grid(axes))
        return normalise_crop(crop, self._net(tile.fine).config.normalisation)

    def _low_res_from_canonical(self, tile: Tile, logits: np.ndarray) -> torch.Tensor:
        return low_res_from_canonical(tile, logits, self._net(tile.fine).config.low_res_size[0])

    def _cover_whole_object(self, obj: SegmentedObject, tile: Tile) -> None:
        cover_whole_object(
            obj.tiles,
            tile,
            lambda t: self._predict(obj, t),
            self._require_image().image.shape,
            self.max_tiles,
        )

    def _blend(self, obj: SegmentedObject) -> None:
        """Blend every tile's logits onto the canonical grid, then what the prompts set."""
        view = self._require_image()
        shape = view.image.shape
        logits, covered = blend(obj.tiles, shape)
        if obj.prior is not None:
            outside_tiles = ~covered
            logits[outside_tiles & obj.prior] = CERTAIN_LOGIT
        for prompt in obj.prompts:
            painted = prompt.painted
            if painted is None:
                continue
            voxels, inside = painted
            canonical = np.rint(view.voxel_from_input(voxels)).astype(int)
            within = np.all((canonical >= 0) & (canonical < np.asarray(shape)), axis=1)
            logits[tuple(canonical[within].T)] = CERTAIN_LOGIT if inside else -CERTAIN_LOGIT
        obj.logits = logits


def open_session(model: str | os.PathLike = "default", *, reference_order: bool = False) -> Session:
    """A session on a model (the bundled name or a checkpoint) and its small-object companion.

    ``reference_order`` computes attention in the reference implementation's order (SAM-Med3D
    models only). The session can segment one image after another (:func:`segment_objects`).
    """
    from seganypet.model.checkpoint import load_model, load_small_object_model

    network = load_model(model)
    if reference_order:
        if not network.has_reference_order:
            raise InputError("--reference-order applies to SAM-Med3D (vit) models only")
        network.reference_order = True
    return Session(network, small_object_network=load_small_object_model(model))


def segment_objects(
    session: Session, image: PetImage, objects: Sequence[Mapping[str, Any]], *, mm: bool = False
) -> tuple[np.ndarray, dict[int, str]]:
    """Segment named objects of one image from their prompts, in the order given; the label map
    on the image's grid and the name of each label.

    ``objects`` are ``{"name": ..., "prompts": [Prompt, ...]}`` (as
    :func:`seganypet.prompts.prompt_objects` reads them), with voxel indices of the input array,
    or world millimetres (RAS+) when ``mm``. The session's previous image and objects are let go.
    """
    session.set_image(image)
    for index, obj in enumerate(objects):
        if index:
            session.new_object(obj["name"])
        else:
            session.current.name = obj["name"]
        for prompt in obj["prompts"]:
            session.add(prompt.mapped(image.world_to_voxel) if mm else prompt)
    return session.label_map()
