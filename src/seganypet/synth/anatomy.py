"""A whole-body anatomy painted on a fine canvas, with FDG or PSMA uptake.

Positions and sizes are written for a reference adult 1750 mm tall, lying supine, in the body frame
of :mod:`seganypet.synth.geometry` (z = height above the soles). ``BodyPlan`` draws one patient:
height, build, fat, arm posture, organ sizes and the uptake of every structure; ``paint_anatomy``
turns it into activity and labels. Each organ is a superquadric, a union of them, or a tube, so
that its shape stays recognisable while every case differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from seganypet.synth.geometry import (
    Canvas,
    OpenGrid,
    Superquadric,
    rotation,
    rotation_to,
    smooth_curve,
    tube,
)
from seganypet.synth.labels import (
    COLLECTING_SYSTEM_SUV,
    LABELS,
    PSMA_COLLECTING_SYSTEM_SUV,
    PSMA_LACRIMAL_SUV,
    PSMA_SUV_RANGES,
    SUV_RANGES,
    TRACERS,
)

REFERENCE_HEIGHT_MM = 1750.0
REFERENCE_HEAD_CENTER = np.array([0.0, 5.0, 1640.0])

# Labels used only while painting, folded into ``fat`` at the end. They mark the body cavities so
# that bowel stays inside the abdomen and lesions can be placed in the mediastinum.
VISCERAL_FAT = 200
MEDIASTINAL_FAT = 201

FAT, MUSCLE, BONE, MARROW = LABELS["fat"], LABELS["muscle"], LABELS["bone"], LABELS["bone_marrow"]
BODY_WALL = (FAT, MUSCLE)

# Lean torso cross-section (half-width a, half-depth b, centre y0) by reference height z.
TORSO_PROFILE = np.array(
    [
        # z,    a,     b,    y0
        [790.0, 40.0, 45.0, 0.0],
        [820.0, 115.0, 80.0, 0.0],
        [850.0, 150.0, 95.0, 0.0],
        [880.0, 158.0, 100.0, 0.0],
        [930.0, 152.0, 100.0, 3.0],
        [1000.0, 140.0, 98.0, 8.0],
        [1060.0, 132.0, 95.0, 8.0],
        [1120.0, 134.0, 98.0, 5.0],
        [1200.0, 142.0, 104.0, 0.0],
        [1300.0, 146.0, 105.0, 0.0],
        [1380.0, 154.0, 100.0, 0.0],
        [1410.0, 172.0, 95.0, 0.0],
        [1432.0, 145.0, 82.0, -5.0],
        [1450.0, 75.0, 62.0, -10.0],
        [1480.0, 55.0, 55.0, -15.0],
        [1585.0, 50.0, 52.0, -15.0],
    ]
)
# Lean thigh cross-section (centre |x|, half-width, half-depth, centre y0) by reference height z.
THIGH_PROFILE = np.array(
    [
        [450.0, 72.0, 52.0, 55.0, 10.0],
        [600.0, 78.0, 62.0, 65.0, 10.0],
        [700.0, 82.0, 70.0, 72.0, 8.0],
        [820.0, 88.0, 80.0, 82.0, 5.0],
        [900.0, 86.0, 76.0, 80.0, 5.0],
        [960.0, 75.0, 50.0, 60.0, 5.0],
    ]
)
# Subcutaneous fat relative to the case's fat thickness, by reference height z.
FAT_DISTRIBUTION = np.array(
    [
        [450.0, 1.0],
        [820.0, 1.1],
        [900.0, 1.25],
        [1050.0, 1.3],
        [1200.0, 1.0],
        [1350.0, 0.75],
        [1450.0, 0.45],
        [1600.0, 0.35],
    ]
)
# Where the belly bulges (visceral fat), by reference height z.
BELLY_SHAPE = np.array([[880.0, 0.0], [960.0, 0.7], [1040.0, 1.0], [1140.0, 0.6], [1220.0, 0.0]])


def _uniform(rng: np.random.Generator, low: float, high: float, margin: float = 0.0) -> float:
    """A uniform draw from [low, high] shrunk by ``margin`` (a fraction of the width) at each end."""
    width = high - low
    return float(rng.uniform(low + margin * width, high - margin * width))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def sample_uptake(rng: np.random.Generator, tracer: str = "FDG") -> dict[str, float]:
    """Mean SUV of every structure for one case, inside the literature ranges of the label table
    (FDG) or of :data:`~seganypet.synth.labels.PSMA_SUV_RANGES`.

    Draws stay in the central 60% of each range, so that noise, partial volume and spill-over
    from hot neighbours leave the measured means inside the ranges.
    """
    if tracer not in TRACERS:
        raise ValueError(f"unknown tracer {tracer!r}; expected one of {', '.join(TRACERS)}")
    if tracer == "PSMA":
        return _sample_psma_uptake(rng)
    suv = {
        name: _uniform(rng, *SUV_RANGES[name], margin=0.2)
        for name in SUV_RANGES
        if name != "lesion"
    }
    suv["brain"] = _uniform(rng, 6.0, 12.0, margin=0.15)
    suv["bladder"] = _log_uniform(rng, 6.0, 45.0)
    # After fasting the myocardium is often near background; otherwise anywhere up to very hot.
    suv["myocardium"] = (
        _uniform(rng, 1.4, 2.5) if rng.random() < 0.35 else _log_uniform(rng, 2.5, 9.5)
    )
    suv["collecting_system"] = _log_uniform(rng, *COLLECTING_SYSTEM_SUV)
    suv["ureters"] = float(np.clip(suv["collecting_system"] * _uniform(rng, 0.3, 0.9), 2.0, 40.0))
    return suv


def _sample_psma_uptake(rng: np.random.Generator) -> dict[str, float]:
    suv = {
        name: _uniform(rng, *bounds, margin=0.2)
        for name, bounds in PSMA_SUV_RANGES.items()
        if name != "lesion"
    }
    suv["bladder"] = _log_uniform(rng, 10.0, 70.0)
    suv["kidney_left"] = suv["kidney_right"] * _uniform(rng, 0.85, 1.15)
    suv["lacrimal"] = _uniform(rng, *PSMA_LACRIMAL_SUV)
    suv["collecting_system"] = _log_uniform(rng, *PSMA_COLLECTING_SYSTEM_SUV)
    suv["ureters"] = float(np.clip(suv["collecting_system"] * _uniform(rng, 0.2, 0.8), 2.0, 60.0))
    return suv


@dataclass
class BodyPlan:
    """One patient: build, posture, organ sizes and uptake."""

    height_mm: float
    lateral_scale: float
    ap_scale: float
    fat_mm: float
    belly_mm: float
    head_scale: float
    head_pitch_deg: float
    arms_up: bool
    arm_gap_mm: float
    fov_top_margin_mm: float
    fov_bottom_fraction: float
    bladder_ml: float
    organ_scale: dict[str, float]
    uptake: dict[str, float]
    seed_words: tuple[int, ...] = field(default=())

    @property
    def height_scale(self) -> float:
        return self.height_mm / REFERENCE_HEIGHT_MM

    @classmethod
    def sample(
        cls, rng: np.random.Generator, arms_up_probability: float = 0.5, tracer: str = "FDG"
    ) -> BodyPlan:
        height = float(np.clip(rng.normal(1720.0, 90.0), 1500.0, 1950.0))
        build = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.2))
        organs = ("brain", "heart", "liver", "spleen", "kidneys", "stomach", "lungs", "bowel")
        return cls(
            height_mm=height,
            lateral_scale=build * float(rng.uniform(0.95, 1.05)),
            ap_scale=build * float(rng.uniform(0.93, 1.07)),
            fat_mm=float(rng.uniform(6.0, 38.0)),
            belly_mm=float(rng.uniform(0.0, 45.0)) if rng.random() < 0.6 else 0.0,
            head_scale=float(
                np.clip(rng.normal((height / REFERENCE_HEIGHT_MM) ** 0.4, 0.03), 0.88, 1.12)
            ),
            head_pitch_deg=float(rng.uniform(-8.0, 8.0)),
            arms_up=bool(rng.random() < arms_up_probability),
            arm_gap_mm=float(rng.uniform(-4.0, 18.0)),
            fov_top_margin_mm=float(rng.uniform(8.0, 40.0)),
            fov_bottom_fraction=float(rng.uniform(0.37, 0.45)),
            bladder_ml=_log_uniform(rng, 60.0, 500.0),
            organ_scale={name: float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2)) for name in organs},
            uptake=sample_uptake(rng, tracer),
        )


class AnatomyPainter:
    """Paints a ``BodyPlan`` onto a canvas and records the landmarks lesions are placed by."""

    def __init__(self, plan: BodyPlan, rng: np.random.Generator, spacing_mm: float = 2.0):
        self.plan = plan
        self.rng = rng
        self.suv = plan.uptake
        self.landmarks: dict[str, np.ndarray] = {}
        hs = plan.height_scale
        self.head_center = np.array([0.0, 5.0 * plan.ap_scale, REFERENCE_HEAD_CENTER[2] * hs])
        self.head_rotation = rotation(about_x_deg=plan.head_pitch_deg)
        self.vertex_z = self.head_center[2] + 112.0 * plan.head_scale
        self.arm_paths = self._arm_paths()
        self.canvas = self._make_canvas(spacing_mm)

    # --- frames -----------------------------------------------------------------------------

    def torso(self, x: float, y: float, z: float, jitter_mm: float = 0.0) -> np.ndarray:
        """A reference torso position in this patient's world frame."""
        p = self.plan
        point = np.array([x * p.lateral_scale, y * p.ap_scale, z * p.height_scale])
        if jitter_mm:
            point += self.rng.normal(0.0, jitter_mm, 3)
        return point

    def head(self, x: float, y: float, z: float) -> np.ndarray:
        """A reference head position in this patient's world frame (scaled and tilted head)."""
        offset = np.array([x, y, z]) - REFERENCE_HEAD_CENTER
        return self.head_center + self.plan.head_scale * (self.head_rotation @ offset)

    def organ_size(self, name: str) -> float:
        p = self.plan
        return float(
            (p.lateral_scale * p.ap_scale * p.height_scale) ** (1 / 3)
            * p.organ_scale.get(name, 1.0)
        )

    def _profile(self, table: np.ndarray, z_world: np.ndarray) -> list[np.ndarray]:
        z_ref = z_world / self.plan.height_scale
        return [
            np.interp(z_ref, table[:, 0], table[:, k], left=np.nan, right=np.nan)
            for k in range(1, table.shape[1])
        ]

    def fat_thickness(self, z_world: np.ndarray) -> np.ndarray:
        z_ref = z_world / self.plan.height_scale
        return self.plan.fat_mm * np.interp(z_ref, FAT_DISTRIBUTION[:, 0], FAT_DISTRIBUTION[:, 1])

    def belly(self, z_world: np.ndarray) -> np.ndarray:
        z_ref = z_world / self.plan.height_scale
        return self.plan.belly_mm * np.interp(z_ref, BELLY_SHAPE[:, 0], BELLY_SHAPE[:, 1])

    def torso_section(
        self, z_world: np.ndarray, outer: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Half-width, half-depth and centre y of the torso (lean or with its fat) at heights z."""
        a, b, y0 = self._profile(TORSO_PROFILE, z_world)
        a, b, y0 = a * self.plan.lateral_scale, b * self.plan.ap_scale, y0 * self.plan.ap_scale
        bulge = self.belly(z_world)
        b, y0 = b + 0.5 * bulge, y0 + 0.5 * bulge
        if outer:
            fat = self.fat_thickness(z_world)
            a, b = a + fat, b + fat
        return a, b, y0

    def thigh_section(self, z_world: np.ndarray, outer: bool) -> tuple[np.ndarray, ...]:
        cx, a, b, y0 = self._profile(THIGH_PROFILE, z_world)
        s = self.plan
        cx, a, b, y0 = cx * s.lateral_scale, a * s.lateral_scale, b * s.ap_scale, y0 * s.ap_scale
        if outer:
            fat = 0.9 * self.fat_thickness(z_world)
            a, b = a + fat, b + fat
        return cx, a, b, y0

    def body_half_width(self, z_world: float) -> float:
        z = np.array([z_world])
        a, _, _ = self.torso_section(z, outer=True)
        cx, ta, _, _ = self.thigh_section(z, outer=True)
        return float(np.nanmax([a[0], cx[0] + ta[0], 0.0]))

    # --- canvas -----------------------------------------------------------------------------

    def _arm_paths(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Centre lines and outer radii of both arms (with their fat)."""
        p, hs = self.plan, self.plan.height_scale
        arm_fat = 0.5 * p.fat_mm
        shoulder_a = float(self.torso_section(np.array([1405.0 * hs]), outer=False)[0][0])
        paths = []
        for side in (1.0, -1.0):
            if p.arms_up:
                lean = np.array([40.0, 40.0, 38.0, 33.0, 30.0])
                radii = lean * p.lateral_scale**0.5 + arm_fat
                shoulder_x = shoulder_a - 30.0
                spread = 2.5 * p.arm_gap_mm + 45.0  # how far the arms lean out as they rise
                points = [
                    [shoulder_x, -15.0, 1405.0 * hs],
                    [shoulder_x + 0.3 * spread, -25.0, 1405.0 * hs + 110.0],
                    [shoulder_x + 0.7 * spread, -25.0, 1405.0 * hs + 230.0],
                    [shoulder_x + spread, -20.0, 1405.0 * hs + 340.0],
                    [shoulder_x + 0.3 * spread - 60.0, -10.0, 1405.0 * hs + 440.0],
                ]
            else:
                z_ref = np.array([1405.0, 1330.0, 1220.0, 1095.0, 990.0, 860.0, 800.0])
                lean = np.array([42.0, 40.0, 37.0, 31.0, 31.0, 22.0, 24.0])
                radii = lean * p.lateral_scale**0.5 + arm_fat
                radii[-1] = 20.0 + 0.3 * arm_fat
                ys = [-10.0, -15.0, -25.0, -35.0, -25.0, -5.0, 5.0]
                points = []
                for i, (z, y, r) in enumerate(zip(z_ref * hs, ys, radii, strict=True)):
                    x = shoulder_a - 28.0 if i == 0 else self.body_half_width(z) + r + p.arm_gap_mm
                    points.append([x, y * p.ap_scale, z])
            path = np.asarray(points)
            path[:, 0] *= side
            paths.append((path, np.asarray(radii, dtype=float)))
        return paths

    def _make_canvas(self, spacing: float) -> Canvas:
        p = self.plan
        top = self.vertex_z + p.fov_top_margin_mm + 12.0
        bottom = p.fov_bottom_fraction * p.height_mm - 12.0
        zs = np.linspace(bottom, top, 64)
        half_width = max(self.body_half_width(z) for z in zs)
        for path, radii in self.arm_paths:
            inside = path[:, 2] < top
            half_width = max(half_width, float(np.max(np.abs(path[inside, 0]) + radii[inside])))
        a, b, y0 = self.torso_section(zs, outer=True)
        front = float(np.nanmax(y0 + b))
        back = float(np.nanmin(y0 - b))
        head_half_depth = 100.0 * p.head_scale
        front = max(front, self.head_center[1] + head_half_depth)
        back = min(back, self.head_center[1] - head_half_depth, -60.0 - 0.7 * p.fat_mm)
        margin = 14.0
        lo = np.array([-half_width - margin, back - margin, bottom])
        hi = np.array([half_width + margin, front + margin, top])
        shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing) + 1)
        return Canvas(lo, spacing, shape)  # type: ignore[arg-type]

    # --- painting ---------------------------------------------------------------------------

    def paint(self) -> Canvas:
        self.paint_body()
        self.paint_head()
        self.paint_thorax()
        self.paint_abdomen()
        self.paint_pelvis()
        self.paint_skeleton()
        labels = self.canvas.labels
        labels[(labels == VISCERAL_FAT) | (labels == MEDIASTINAL_FAT)] = FAT
        return self.canvas

    def _paint_sections(
        self,
        section,
        label: int,
        value: float,
        within: tuple[int, ...],
        sides: tuple[float, ...] = (1.0,),
        flat_back: bool = False,
    ) -> None:
        """Paint elliptic cross-sections (centre |x|, half-width, half-depth, centre y) per canvas slice.

        ``flat_back``: the posterior half is a quartic superellipse, as a back lying on the table.
        """
        canvas = self.canvas
        x, y, z = canvas.full_grid()
        cx, a, b, y0 = (
            np.asarray(v, dtype=np.float64) for v in section(z[0, 0].astype(np.float64))
        )
        valid = np.isfinite(a) & (a > 0)
        if not valid.any():
            return
        k0, k1 = int(np.argmax(valid)), int(len(valid) - np.argmax(valid[::-1]))
        box = (slice(0, canvas.shape[0]), slice(0, canvas.shape[1]), slice(k0, k1))
        inv_a2 = (1.0 / a[k0:k1] ** 2).astype(np.float32)[None, None, :]
        inv_b2 = (1.0 / b[k0:k1] ** 2).astype(np.float32)[None, None, :]
        dy = y - y0[k0:k1].astype(np.float32)[None, None, :]
        dy2 = dy**2 * inv_b2
        if flat_back:
            dy2 = np.where(dy < 0, dy2**2, dy2)
        for side in sides:
            dx2 = (
                x - (side * np.broadcast_to(cx, a.shape)[k0:k1]).astype(np.float32)[None, None, :]
            ) ** 2 * inv_a2
            canvas.fill(box, dx2 + dy2 <= 1.0, label, value, within=within)

    def paint_body(self) -> None:
        suv, canvas = self.suv, self.canvas
        for outer, label, within in ((True, FAT, (0,)), (False, MUSCLE, (0, FAT))):
            value = suv["fat"] if label == FAT else suv["muscle"]
            torso = lambda z, outer=outer: (0.0, *self.torso_section(z, outer=outer))  # noqa: E731
            thighs = lambda z, outer=outer: self.thigh_section(z, outer=outer)  # noqa: E731
            self._paint_sections(torso, label, value, within=within, flat_back=True)
            self._paint_sections(thighs, label, value, within=within, sides=(1.0, -1.0))
        arm_fat = 0.5 * self.plan.fat_mm
        for path, radii in self.arm_paths:
            curve_r = np.interp(
                np.linspace(0, len(path) - 1, 6 * len(path)), np.arange(len(path)), radii
            )
            curve = smooth_curve(path, step_mm=8.0)
            r = np.interp(np.linspace(0, 1, len(curve)), np.linspace(0, 1, len(curve_r)), curve_r)
            canvas.paint_all(tube(curve, r), FAT, suv["fat"], within=(0,))
            canvas.paint_all(
                tube(curve, np.maximum(r - arm_fat, 12.0)), MUSCLE, suv["muscle"], within=(0, FAT)
            )
            humerus_end = path[1] + 0.8 * (path[2] - path[1]) if self.plan.arms_up else path[3]
            canvas.paint_all(
                tube(np.array([path[0], humerus_end]), 10.0), BONE, suv["bone"], within=BODY_WALL
            )
            canvas.paint(
                Superquadric(path[0] + [0, 0, -5.0], [21.0] * 3),
                MARROW,
                suv["bone_marrow"],
                within=BODY_WALL,
            )
            if not self.plan.arms_up:
                hand_center = path[-1] + [0.0, 0.0, -70.0 * self.plan.height_scale]
                hand = Superquadric(
                    hand_center, [16.0 + 0.2 * arm_fat, 42.0, 85.0], exponent_uv=2.5
                )
                canvas.paint(hand, FAT, suv["fat"], within=(0,))
                hand_lean = Superquadric(hand_center, [13.0, 38.0, 80.0], exponent_uv=2.5)
                canvas.paint(hand_lean, MUSCLE, suv["muscle"], within=(0, FAT))
            self.landmarks[f"axilla_{'right' if path[0, 0] > 0 else 'left'}"] = path[0] + [
                -np.sign(path[0, 0]) * 45.0,
                -5.0,
                -60.0,
            ]

    def paint_head(self) -> None:
        suv, canvas, hd = self.suv, self.canvas, self.head
        k = self.plan.head_scale
        outer = Superquadric(
            self.head_center, np.array([75.0, 98.0, 112.0]) * k, self.head_rotation
        )
        scalp = Superquadric(
            self.head_center, np.array([70.0, 93.0, 107.0]) * k, self.head_rotation
        )
        jaw_center = hd(0.0, 25.0, 1550.0)
        jaw = Superquadric(jaw_center, np.array([56.0, 52.0, 36.0]) * k, self.head_rotation)
        jaw_lean = Superquadric(jaw_center, np.array([51.0, 47.0, 32.0]) * k, self.head_rotation)
        for shape in (outer, jaw):
            canvas.paint(shape, FAT, suv["fat"], within=(0,))
        for shape in (scalp, jaw_lean):
            canvas.paint(shape, MUSCLE, suv["muscle"], within=(0, FAT))

        brain_size = k * self.plan.organ_scale["brain"] ** (1 / 3)
        brain = Superquadric(
            hd(0.0, -5.0, 1668.0), np.array([66.0, 84.0, 58.0]) * brain_size, self.head_rotation
        )
        cerebellum = Superquadric(
            hd(0.0, -48.0, 1624.0), np.array([47.0, 30.0, 20.0]) * brain_size, self.head_rotation
        )
        for shape in (brain, cerebellum):
            skull = Superquadric(shape.center, shape.semi_axes + 7.0 * k, self.head_rotation)
            canvas.paint(skull, BONE, suv["bone"], within=BODY_WALL)
        self._paint_brain(brain, cerebellum)

        salivary = []
        for side in (1.0, -1.0):
            salivary.append(
                Superquadric(hd(47.0 * side, 2.0, 1574.0), np.array([11.0, 17.0, 25.0]) * k)
            )
            salivary.append(
                Superquadric(hd(30.0 * side, 32.0, 1538.0), np.array([10.0, 13.0, 10.0]) * k)
            )
            canvas.paint(
                Superquadric(hd(14.0 * side, 12.0, 1557.0), np.array([7.0, 9.0, 11.0]) * k),
                LABELS["tonsils"],
                suv["tonsils"],
                within=BODY_WALL,
            )
            self.landmarks[f"cervical_{'right' if side > 0 else 'left'}"] = hd(
                36.0 * side, 10.0, 1515.0
            )
            self.landmarks[f"oropharynx_{'right' if side > 0 else 'left'}"] = hd(
                14.0 * side, 12.0, 1557.0
            )
        canvas.paint_all(
            salivary, LABELS["salivary_glands"], suv["salivary_glands"], within=BODY_WALL
        )
        if "lacrimal" in suv:  # PSMA: the lacrimal glands, above and outside each eye
            lacrimal = [
                Superquadric(hd(32.0 * side, 72.0, 1615.0), np.array([7.0, 5.0, 4.0]) * k)
                for side in (1.0, -1.0)
            ]
            canvas.paint_all(lacrimal, LABELS["salivary_glands"], suv["lacrimal"], within=BODY_WALL)

    def _paint_brain(self, brain: Superquadric, cerebellum: Superquadric) -> None:
        """Grey matter hotter than white matter, hot deep nuclei, cold ventricles, normalised to the case mean."""
        canvas, rng, hd = self.canvas, self.rng, self.head
        lo = np.minimum(brain.bounds()[0], cerebellum.bounds()[0])
        hi = np.maximum(brain.bounds()[1], cerebellum.bounds()[1])
        box = canvas.box(lo, hi)
        if box is None:
            return
        grid = canvas.grid(box)
        r_brain = brain.radius(grid)
        in_cerebrum = r_brain <= 1.0
        in_cerebellum = cerebellum.inside(grid) & ~in_cerebrum
        white_level = _uniform(rng, 0.5, 0.7)
        u = brain.local(grid)[0]
        pattern = np.where(r_brain > 0.8, 1.0, white_level).astype(np.float32)
        pattern[(np.abs(u) * brain.semi_axes[0] < 4.0) & (r_brain > 0.35)] = 0.85  # medial cortex
        scale = self.plan.head_scale
        for side in (1.0, -1.0):
            for center, semi, level in (
                ((20.0, 5.0, 1668.0), (11.0, 20.0, 13.0), 1.05),  # striatum
                ((9.0, -12.0, 1665.0), (9.0, 12.0, 9.0), 0.95),  # thalamus
                ((8.0, -2.0, 1678.0), (5.0, 20.0, 9.0), 0.2),  # lateral ventricle
            ):
                nucleus = Superquadric(
                    hd(center[0] * side, *center[1:]), np.array(semi) * scale, self.head_rotation
                )
                pattern[nucleus.inside(grid)] = level
        gyri = ndimage.gaussian_filter(rng.standard_normal(pattern.shape).astype(np.float32), 1.5)
        pattern *= 1.0 + 0.25 * gyri / (gyri.std() + 1e-6) * (r_brain > 0.8)
        pattern[in_cerebellum] = _uniform(rng, 0.7, 0.9)
        mask = in_cerebrum | in_cerebellum
        # Normalised on the interior, where a reader (or a test) measures the mean away from the edges.
        interior = (r_brain < 0.88) | in_cerebellum
        pattern *= self.suv["brain"] / float(pattern[interior].mean())
        canvas.fill(box, mask, LABELS["brain"], pattern, within=(BONE, MUSCLE, FAT))
        stem = tube(np.array([hd(0.0, -18.0, 1635.0), hd(0.0, -24.0, 1592.0)]), 10.0 * scale)
        canvas.paint_all(stem, LABELS["brain"], 0.5 * self.suv["brain"], within=BODY_WALL + (BONE,))

    def diaphragm_height(self, grid: OpenGrid) -> np.ndarray:
        """Height of the diaphragm above each (x, y): two domes, lower at the back."""
        x, y, _ = grid
        heights = []
        for apex in (self.torso(55.0, -5.0, 1240.0), self.torso(-55.0, -10.0, 1226.0)):
            heights.append(apex[2] - ((x - apex[0]) ** 2 + (y - apex[1]) ** 2) / 340.0)
        return np.maximum(*heights)

    def paint_thorax(self) -> None:
        suv, canvas, t, rng = self.suv, self.canvas, self.torso, self.rng
        lung_size = self.organ_size("lungs")
        lungs = [
            Superquadric(
                t(68.0, -8.0, 1290.0, 3.0),
                np.array([66.0, 88.0, 165.0]) * lung_size,
                exponent_uv=2.6,
            ),
            Superquadric(
                t(-70.0, -8.0, 1285.0, 3.0),
                np.array([62.0, 88.0, 165.0]) * lung_size,
                exponent_uv=2.6,
            ),
        ]
        for lung in lungs:
            found = canvas.region(lung)
            if found is None:
                continue
            box, grid = found
            mask = lung.inside(grid) & (grid[2] > self.diaphragm_height(grid))
            canvas.fill(box, mask, LABELS["lungs"], suv["lungs"], within=BODY_WALL)
        mediastinum = Superquadric(t(-5.0, 12.0, 1340.0), np.array([36.0, 55.0, 100.0]) * lung_size)
        canvas.paint(mediastinum, MEDIASTINAL_FAT, suv["fat"], within=(LABELS["lungs"], MUSCLE))
        airway = smooth_curve([t(0.0, 25.0, 1520.0), t(0.0, 15.0, 1420.0), t(0.0, 0.0, 1330.0)])
        canvas.paint_all(
            tube(airway, 8.0), LABELS["lungs"], 0.03, within=BODY_WALL + (MEDIASTINAL_FAT,)
        )
        for side in (1.0, -1.0):
            bronchus = np.array([t(0.0, 0.0, 1330.0), t(45.0 * side, -5.0, 1298.0)])
            canvas.paint_all(
                tube(bronchus, 5.5),
                LABELS["lungs"],
                0.03,
                within=(MEDIASTINAL_FAT, LABELS["lungs"]),
            )
            self.landmarks[f"hilar_{'right' if side > 0 else 'left'}"] = t(
                50.0 * side, -2.0, 1300.0
            )
            self.landmarks[f"supraclavicular_{'right' if side > 0 else 'left'}"] = t(
                55.0 * side, 20.0, 1440.0
            )
            self.landmarks[f"paratracheal_{'right' if side > 0 else 'left'}"] = t(
                14.0 * side, 12.0, 1372.0
            )
        self.landmarks["subcarinal"] = t(0.0, -8.0, 1303.0)
        self.landmarks["prevascular"] = t(-8.0, 42.0, 1345.0)

        heart_size = self.organ_size("heart")
        heart_center = t(-22.0, 25.0, 1250.0, 4.0)
        apex_direction = np.array([-0.55, 0.5, -0.67]) + rng.normal(0.0, 0.08, 3)
        heart = Superquadric(
            heart_center, np.array([52.0, 52.0, 62.0]) * heart_size, rotation_to(apex_direction)
        )
        found = canvas.region(heart)
        if found is not None:
            box, grid = found
            above = grid[2] > self.diaphragm_height(grid) - 6.0
            canvas.fill(
                box, heart.inside(grid) & above, LABELS["blood_pool"], suv["blood_pool"], keep=(0,)
            )
        wall = _uniform(rng, 9.0, 13.0)
        lv_center = heart_center + heart.orientation @ np.array([-8.0, 0.0, 12.0]) * heart_size
        lv_outer = Superquadric(
            lv_center, np.array([33.0, 33.0, 48.0]) * heart_size, heart.orientation
        )
        lv_inner = Superquadric(
            lv_center, lv_outer.semi_axes - np.array([wall, wall, 0.8 * wall]), heart.orientation
        )
        found = canvas.region(lv_outer)
        if found is not None:
            box, grid = found
            u, _, w = lv_outer.local(grid)
            myocardium = lv_outer.inside(grid) & ~lv_inner.inside(grid) & (w > -0.55)
            gradient = 1.0 + _uniform(rng, -0.2, 0.2) * u
            canvas.fill(
                box,
                myocardium,
                LABELS["myocardium"],
                (suv["myocardium"] * gradient).astype(np.float32),
                keep=(0,),
            )
        self.landmarks["paracardiac"] = lv_center
        self.landmarks["heart_center"] = heart_center

        blood = suv["blood_pool"]
        aorta = smooth_curve(
            [
                heart_center + [14.0, -4.0, 12.0],
                t(6.0, 22.0, 1305.0),
                t(4.0, 18.0, 1350.0),
                t(-6.0, 0.0, 1368.0),
                t(-20.0, -30.0, 1350.0),
                t(-22.0, -40.0, 1300.0),
                t(-20.0, -38.0, 1200.0),
                t(-12.0, -25.0, 1130.0),
                t(-10.0, -15.0, 1050.0),
                t(-5.0, -10.0, 1000.0),
            ]
        )
        radii = np.interp(
            np.arange(len(aorta)), [0, len(aorta) * 0.3, len(aorta) - 1], [15.0, 13.0, 10.0]
        )
        canvas.paint_all(
            tube(aorta, radii * heart_size),
            LABELS["blood_pool"],
            blood,
            keep=(0, LABELS["myocardium"]),
        )
        vena_cava = smooth_curve(
            [
                t(22.0, 20.0, 1370.0),
                t(20.0, 18.0, 1270.0),
                t(24.0, -15.0, 1150.0),
                t(22.0, -25.0, 1050.0),
                t(10.0, -15.0, 995.0),
            ]
        )
        canvas.paint_all(
            tube(vena_cava, 10.0 * heart_size),
            LABELS["blood_pool"],
            0.92 * blood,
            keep=(0, LABELS["myocardium"]),
        )
        self.landmarks["aorta_bifurcation"] = aorta[-1]

    def paint_abdomen(self) -> None:
        suv, canvas, t = self.suv, self.canvas, self.torso
        hs = self.plan.height_scale
        cavity_center = t(0.0, 12.0, 1025.0) + [0.0, 0.45 * self.plan.belly_mm, 0.0]
        cavity_semi = np.array(
            [
                122.0 * self.plan.lateral_scale,
                78.0 * self.plan.ap_scale + 0.5 * self.plan.belly_mm,
                180.0 * hs,
            ]
        )
        cavity = Superquadric(cavity_center, cavity_semi, exponent_uv=2.4)
        found = canvas.region(cavity)
        if found is not None:
            box, grid = found
            mask = cavity.inside(grid) & (grid[2] < self.diaphragm_height(grid))
            canvas.fill(box, mask, VISCERAL_FAT, suv["fat"], within=(MUSCLE,))
        self._paint_bowel(cavity)

        stomach_size = self.organ_size("stomach")
        stomach = [
            Superquadric(t(-55.0, 0.0, 1200.0, 4.0), np.array([38.0, 38.0, 40.0]) * stomach_size)
        ]
        body = smooth_curve(
            [
                t(-55.0, 5.0, 1195.0),
                t(-45.0, 40.0, 1140.0),
                t(-10.0, 55.0, 1110.0),
                t(25.0, 40.0, 1102.0),
            ]
        )
        stomach += tube(body, np.linspace(34.0, 12.0, len(body)) * stomach_size)
        self._paint_below_diaphragm(stomach, LABELS["stomach"], suv["stomach"])

        liver_size = self.organ_size("liver")
        liver = [
            Superquadric(
                t(60.0, 0.0, 1152.0, 5.0),
                np.array([76.0, 70.0, 78.0]) * liver_size,
                rotation(about_y_deg=-12.0),
            ),
            Superquadric(
                t(-15.0, 34.0, 1180.0, 5.0),
                np.array([60.0, 34.0, 30.0]) * liver_size,
                rotation(about_z_deg=-15.0),
            ),
        ]
        # The inferior border runs obliquely, low on the right and rising to the left lobe.
        lower_border = (
            t(20.0, 0.0, 1112.0),
            np.array([-0.45, 0.1, -1.0]) + self.rng.normal(0.0, 0.08, 3),
        )
        self._paint_below_diaphragm(liver, LABELS["liver"], suv["liver"], cut=lower_border)
        spleen = Superquadric(
            t(-92.0, -48.0, 1170.0, 5.0),
            np.array([28.0, 52.0, 48.0]) * self.organ_size("spleen"),
            rotation(about_x_deg=20.0, about_z_deg=30.0),
        )
        self._paint_below_diaphragm([spleen], LABELS["spleen"], suv["spleen"])
        self.landmarks["liver_center"] = liver[0].center
        self.landmarks["porta_hepatis"] = t(20.0, 20.0, 1120.0)

        for side in (1.0, -1.0):
            psoas = smooth_curve(
                [
                    t(28.0 * side, -48.0, 1100.0),
                    t(45.0 * side, -38.0, 1000.0),
                    t(62.0 * side, -22.0, 920.0),
                    t(75.0 * side, 8.0, 865.0),
                ]
            )
            canvas.paint_all(
                tube(psoas, np.linspace(10.0, 22.0, len(psoas)) * self.plan.lateral_scale),
                MUSCLE,
                suv["muscle"],
                within=(VISCERAL_FAT, MUSCLE),
            )
        self._paint_kidneys()
        self.landmarks["para_aortic_left"] = t(-30.0, -22.0, 1060.0)
        self.landmarks["aortocaval"] = t(6.0, -18.0, 1085.0)
        self.landmarks["mesenteric"] = t(0.0, 35.0, 1040.0)
        self.landmarks["retrocrural"] = t(-15.0, -55.0, 1150.0)

    def _paint_below_diaphragm(
        self,
        shapes: list,
        label: int,
        value: float,
        cut: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Paint ``shapes`` below the diaphragm; ``cut`` = (point, normal) keeps the side behind it."""
        for shape in shapes:
            found = self.canvas.region(shape)
            if found is None:
                continue
            box, grid = found
            mask = shape.inside(grid) & (grid[2] < self.diaphragm_height(grid))
            if cut is not None:
                point, normal = cut
                mask &= sum((g - c) * n for g, c, n in zip(grid, point, normal, strict=True)) <= 0.0
            self.canvas.fill(
                box, mask, label, value, keep=(0, LABELS["lungs"], LABELS["myocardium"])
            )

    def _paint_bowel(self, cavity: Superquadric) -> None:
        """Colon frame and small-bowel loops; uptake patchy along their length."""
        suv, canvas, t, rng = self.suv, self.canvas, self.torso, self.rng
        colon = smooth_curve(
            [
                t(85.0, 20.0, 960.0),
                t(95.0, 0.0, 1010.0),
                t(95.0, -5.0, 1080.0),
                t(80.0, 15.0, 1110.0),
                t(40.0, 60.0, 1085.0),
                t(-30.0, 60.0, 1090.0),
                t(-85.0, 5.0, 1130.0),
                t(-100.0, -10.0, 1060.0),
                t(-95.0, 0.0, 975.0),
                t(-55.0, 25.0, 930.0),
                t(-10.0, 10.0, 915.0),
                t(0.0, -45.0, 905.0),
                t(0.0, -55.0, 860.0),
            ],
            step_mm=10.0,
        )
        colon += rng.normal(0.0, 4.0, colon.shape)
        colon_radius = _uniform(rng, 17.0, 24.0) * np.ones(len(colon))
        colon_radius[-8:] = np.linspace(colon_radius[0], 15.0, 8)
        curves = [(colon, colon_radius)]
        region_center = t(0.0, 30.0, 995.0)
        region_semi = np.array(
            [
                92.0 * self.plan.lateral_scale,
                52.0 * self.plan.ap_scale,
                82.0 * self.plan.height_scale,
            ]
        )
        for _ in range(10):
            loop = self._random_loop(region_center, region_semi, 30)
            curves.append((loop, np.full(len(loop), _uniform(rng, 9.0, 12.0))))
        levels = []
        for points, _ in curves:
            walk = ndimage.gaussian_filter1d(rng.standard_normal(len(points)), 2.0, mode="nearest")
            walk /= walk.std() + 1e-6
            curve_levels = np.exp(0.3 * walk + rng.normal(0.0, 0.2))
            curve_levels[walk > 1.5] *= _uniform(rng, 1.2, 1.8)
            levels.append(curve_levels)
        for (points, radii), curve_levels in zip(curves, levels, strict=True):
            for capsule, level in zip(tube(points, radii), curve_levels[:-1], strict=True):
                canvas.paint(
                    capsule, LABELS["bowel"], float(level), within=(VISCERAL_FAT, LABELS["bowel"])
                )
        # Rescale so that the bowel's volume-weighted mean is the drawn one.
        box = canvas.box(*cavity.bounds())
        if box is not None:
            bowel = canvas.labels[box] == LABELS["bowel"]
            if bowel.any():
                activity = canvas.activity[box]
                activity[bowel] *= suv["bowel"] / float(activity[bowel].mean())

    def _random_loop(self, center: np.ndarray, semi: np.ndarray, n: int) -> np.ndarray:
        rng = self.rng
        point = center + rng.uniform(-0.5, 0.5, 3) * semi
        direction = rng.normal(size=3)
        points = []
        for _ in range(n):
            direction = direction / np.linalg.norm(direction) + 0.8 * rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            step = point + 16.0 * direction
            if np.sum(((step - center) / semi) ** 2) > 1.0:
                direction = center - point + rng.normal(0.0, 10.0, 3)
                direction /= np.linalg.norm(direction)
                step = point + 16.0 * direction
            point = step
            points.append(point)
        return smooth_curve(points, step_mm=6.0)

    def _paint_kidneys(self) -> None:
        suv, canvas, t, rng = self.suv, self.canvas, self.torso, self.rng
        size = self.organ_size("kidneys")
        for side, name, z in ((1.0, "kidney_right", 1045.0), (-1.0, "kidney_left", 1062.0)):
            center = t(72.0 * side, -46.0, z, 5.0)
            axis = np.array([-0.25 * side, -0.2, 1.0])
            axis /= np.linalg.norm(axis)
            lateral = np.array([side, -0.55, 0.0])
            lateral -= (lateral @ axis) * axis
            lateral /= np.linalg.norm(lateral)
            frame = np.stack([lateral, np.cross(axis, lateral), axis], axis=1)
            semi = np.array([27.0, 24.0, 55.0]) * size
            kidney = Superquadric(center, semi, frame)
            label = LABELS[name]
            canvas.paint(kidney, label, suv[name], keep=(0,))
            urine = suv["collecting_system"]

            def local(
                u: float, v: float, w: float, center=center, frame=frame, semi=semi
            ) -> np.ndarray:
                return center + frame @ (np.array([u, v, w]) * semi)

            pelvis = Superquadric(
                local(-0.6, 0.0, -0.05), semi * np.array([0.45, 0.3, 0.28]), frame
            )
            canvas.paint(pelvis, label, urine, keep=(0,))
            for w in (-0.55, 0.0, 0.55):
                if rng.random() < 0.8:
                    calyx = local(-0.05, 0.0, w)
                    canvas.paint_all(
                        tube(np.array([local(-0.55, 0.0, 0.3 * w), calyx]), 4.0),
                        label,
                        urine,
                        keep=(0,),
                    )
                    canvas.paint(
                        Superquadric(calyx, np.full(3, _uniform(rng, 4.0, 7.0))),
                        label,
                        urine,
                        keep=(0,),
                    )
            self.landmarks[f"adrenal_{'right' if side > 0 else 'left'}"] = local(-0.3, 0.2, 1.25)
            self.landmarks[f"{name}_center"] = center
            self._paint_ureter(local(-1.0, 0.0, -0.1), side)

    def _paint_ureter(self, start: np.ndarray, side: float) -> None:
        t, rng = self.torso, self.rng
        path = smooth_curve(
            [
                start,
                t(45.0 * side, -30.0, 1000.0),
                t(42.0 * side, -32.0, 950.0),
                t(55.0 * side, -35.0, 905.0),
                t(42.0 * side, -8.0, 878.0),
                t(18.0 * side, 20.0, 880.0),
            ],
            step_mm=6.0,
        )
        boluses = ndimage.gaussian_filter1d(rng.standard_normal(len(path)), 3.0) > _uniform(
            rng, 0.0, 0.25
        )
        for capsule, full in zip(tube(path, 3.5), boluses[:-1], strict=True):
            level = self.suv["ureters"] if full else self.suv["muscle"]
            self.canvas.paint(
                capsule, LABELS["ureters"], level, within=(VISCERAL_FAT, MUSCLE, LABELS["bowel"])
            )

    def paint_pelvis(self) -> None:
        suv, canvas, t = self.suv, self.canvas, self.torso
        hs = self.plan.height_scale
        radius = (3.0 * self.plan.bladder_ml * 1000.0 / (4.0 * np.pi)) ** (1 / 3)
        semi = radius * np.array([1.25, 0.9, 0.889])
        center = t(0.0, 38.0, 0.0) + [0.0, 0.0, 864.0 * hs + semi[2]]
        bladder = Superquadric(center, semi, rotation(about_x_deg=-15.0))
        canvas.paint(bladder, LABELS["bladder"], suv["bladder"], keep=(0,))
        self.landmarks["bladder_center"] = center
        blood = suv["blood_pool"]
        for side in (1.0, -1.0):
            artery = smooth_curve(
                [
                    t(-5.0, -10.0, 1000.0),
                    t(45.0 * side, -5.0, 940.0),
                    t(70.0 * side, 15.0, 880.0),
                    t(82.0 * side, 40.0, 840.0),
                    t(80.0 * side, 30.0, 700.0),
                ]
            )
            vein = smooth_curve(
                [
                    t(10.0, -15.0, 995.0),
                    t(40.0 * side, -12.0, 940.0),
                    t(62.0 * side, 8.0, 880.0),
                    t(72.0 * side, 38.0, 840.0),
                    t(72.0 * side, 28.0, 700.0),
                ]
            )
            canvas.paint_all(
                tube(artery, np.linspace(7.0, 4.0, len(artery))),
                LABELS["blood_pool"],
                blood,
                keep=(0,),
            )
            canvas.paint_all(
                tube(vein, np.linspace(8.0, 4.5, len(vein))),
                LABELS["blood_pool"],
                0.92 * blood,
                keep=(0,),
            )
            name = "right" if side > 0 else "left"
            self.landmarks[f"iliac_{name}"] = t(58.0 * side, -5.0, 935.0)
            self.landmarks[f"external_iliac_{name}"] = t(66.0 * side, 18.0, 885.0)
            self.landmarks[f"inguinal_{name}"] = t(82.0 * side, 55.0, 845.0)
            self.landmarks[f"pelvic_sidewall_{name}"] = t(55.0 * side, 20.0, 885.0)

    def paint_skeleton(self) -> None:
        suv, canvas, t, rng = self.suv, self.canvas, self.torso, self.rng
        marrow, bone = suv["bone_marrow"], suv["bone"]
        spine_curve = smooth_curve(
            [
                t(0.0, -28.0, 1560.0),
                t(0.0, -35.0, 1500.0),
                t(0.0, -45.0, 1450.0),
                t(0.0, -60.0, 1380.0),
                t(0.0, -68.0, 1300.0),
                t(0.0, -64.0, 1200.0),
                t(0.0, -52.0, 1110.0),
                t(0.0, -38.0, 1040.0),
                t(0.0, -35.0, 990.0),
                t(0.0, -42.0, 960.0),
            ],
            step_mm=2.0,
        )
        arc = np.concatenate(
            [[0.0], np.cumsum(np.linalg.norm(np.diff(spine_curve, axis=0), axis=1))]
        )
        # C3-C7, T1-T12, L1-L5: relative heights and (half-width, half-depth) of the bodies.
        heights = np.array([20.0] * 5 + [26.0] * 12 + [36.0] * 5)
        widths = np.concatenate([np.full(5, 12.0), np.linspace(14.0, 19.0, 12), np.full(5, 23.0)])
        depths = np.concatenate([np.full(5, 9.0), np.linspace(12.0, 15.0, 12), np.full(5, 17.0)])
        start = float(np.interp(1545.0 * self.plan.height_scale, spine_curve[::-1, 2], arc[::-1]))
        end = float(np.interp(985.0 * self.plan.height_scale, spine_curve[::-1, 2], arc[::-1]))
        bounds = start + (end - start) * np.concatenate([[0.0], np.cumsum(heights)]) / heights.sum()
        for i in range(len(heights)):
            mid = 0.5 * (bounds[i] + bounds[i + 1])
            center = np.array([np.interp(mid, arc, spine_curve[:, k]) for k in range(3)])
            ahead = np.array([np.interp(mid + 2.0, arc, spine_curve[:, k]) for k in range(3)])
            frame = rotation_to(center - ahead)
            half_height = 0.4 * (bounds[i + 1] - bounds[i])
            body = Superquadric(
                center, [widths[i], depths[i], half_height], frame, exponent_uv=2.0, exponent_w=6.0
            )
            canvas.paint(
                body,
                MARROW,
                marrow * _uniform(rng, 0.92, 1.08),
                within=BODY_WALL + (VISCERAL_FAT, MEDIASTINAL_FAT),
            )
            process = Superquadric(
                center + frame @ [0.0, -depths[i] - 22.0, 0.0],
                [5.0, 14.0, half_height * 0.7],
                frame,
            )
            canvas.paint(process, BONE, 0.5 * (bone + marrow), within=BODY_WALL)
        self.landmarks["vertebra_thoracic"] = t(0.0, -66.0, 1250.0)
        self.landmarks["vertebra_lumbar"] = t(0.0, -40.0, 1030.0)

        sacrum = Superquadric(
            t(0.0, -72.0, 930.0),
            np.array([44.0, 15.0, 52.0]) * self.plan.lateral_scale,
            rotation(about_x_deg=-38.0),
        )
        canvas.paint(sacrum, MARROW, marrow, within=BODY_WALL + (VISCERAL_FAT, LABELS["bowel"]))
        pelvic_bones = [sacrum]
        for side in (1.0, -1.0):
            wing = Superquadric(
                t(98.0 * side, -30.0, 975.0),
                np.array([9.0, 58.0, 52.0]) * self.plan.lateral_scale,
                rotation(about_z_deg=-35.0 * side, about_y_deg=12.0 * side),
            )
            femoral_head = Superquadric(
                t(88.0 * side, 5.0, 893.0), np.full(3, 23.0 * self.plan.lateral_scale)
            )
            ischium = Superquadric(t(58.0 * side, -22.0, 850.0), np.array([13.0, 18.0, 30.0]))
            pubis = Superquadric(
                t(30.0 * side, 50.0, 868.0),
                np.array([26.0, 9.0, 10.0]),
                rotation(about_z_deg=20.0 * side),
            )
            trochanter = Superquadric(t(122.0 * side, -8.0, 872.0), np.array([18.0, 20.0, 26.0]))
            pelvic_bones += [wing, femoral_head, ischium, pubis, trochanter]
            for shape in (wing, femoral_head, ischium, pubis, trochanter):
                canvas.paint(
                    shape, MARROW, marrow, within=BODY_WALL + (VISCERAL_FAT, LABELS["bowel"])
                )
            neck = tube(np.array([femoral_head.center, trochanter.center]), 15.0)
            canvas.paint_all(neck, MARROW, marrow, within=BODY_WALL)
            shaft = tube(np.array([trochanter.center, t(95.0 * side, 15.0, 450.0)]), 13.0)
            canvas.paint_all(shaft, BONE, bone, within=BODY_WALL)
            clavicle = smooth_curve(
                [
                    t(18.0 * side, 70.0, 1425.0),
                    t(80.0 * side, 62.0, 1437.0),
                    t(148.0 * side, 22.0, 1430.0),
                ]
            )
            canvas.paint_all(tube(clavicle, 7.0), BONE, bone, within=BODY_WALL)
            self.landmarks[f"iliac_bone_{'right' if side > 0 else 'left'}"] = wing.center
        self.landmarks["sacrum"] = sacrum.center
        lean_b = self.torso_section(
            np.array([1395.0, 1310.0]) * self.plan.height_scale, outer=False
        )[1]
        sternum = [
            Superquadric(
                [0.0, lean_b[0] - 12.0, 1395.0 * self.plan.height_scale], [22.0, 7.0, 22.0]
            ),
            Superquadric(
                [0.0, lean_b[1] - 10.0, 1310.0 * self.plan.height_scale],
                [14.0, 7.0, 60.0],
                rotation(about_x_deg=15.0),
            ),
        ]
        canvas.paint_all(sternum, MARROW, marrow, within=BODY_WALL + (MEDIASTINAL_FAT,))
