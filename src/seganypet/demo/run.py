"""Running the demo: its cases, the simulated clicks, the files and the MIP figure."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seganypet.atomic import write_text_atomic
from seganypet.datasets import shared_data_dir
from seganypet.errors import InputError
from seganypet.evaluate.metrics import dice
from seganypet.evaluate.users import ErrorCentreUser
from seganypet.image import PetImage
from seganypet.io.masks import save_mask
from seganypet.io.nifti import write_nifti
from seganypet.model.network import PromptableNetwork
from seganypet.prompts import Prompt
from seganypet.quant import quantify
from seganypet.session import Session

#: Lesions the phantom demo prefers: big enough to see on a MIP, small enough to be one lesion.
LESION_VOLUME_ML = (3.0, 80.0)
DEMO_ORGAN = "liver"
MIP_WINDOW = (0.0, 8.0)
OBJECT_COLOURS = ("#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9")


@dataclass
class DemoObject:
    """One object the simulated user segmented, and how close each click brought it to the truth."""

    name: str
    truth: np.ndarray
    mask: np.ndarray | None = None
    prompts: list[Prompt] = field(default_factory=list)
    dice_per_click: list[float] = field(default_factory=list)
    seconds_per_click: list[float] = field(default_factory=list)


@dataclass
class DemoCase:
    """A case of the demo: its image, objects and the files written for it."""

    name: str
    title: str
    image: PetImage
    objects: list[DemoObject]
    files: dict[str, Path] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def phantom_case(seed: int) -> DemoCase:
    """A synthetic phantom with one mid-sized lesion and the liver, their truth from the phantom."""
    from seganypet.synth.phantom import generate_phantom

    for attempt in range(50):
        phantom = generate_phantom(seed + attempt)
        lesions = [
            lesion
            for lesion in phantom.lesions
            if LESION_VOLUME_ML[0] <= lesion.volume_ml <= LESION_VOLUME_ML[1]
        ]
        if lesions:
            break
    else:  # pragma: no cover - every seed range tried so far holds such a lesion
        raise RuntimeError(f"no phantom from seed {seed} on holds a lesion of 3-80 ml")
    lesion = max(lesions, key=lambda info: info.volume_ml)
    organ_label = next(k for k, v in phantom.label_names.items() if v == DEMO_ORGAN)
    objects = [
        DemoObject(f"lesion ({lesion.site})", phantom.lesion_instances == lesion.instance),
        DemoObject(DEMO_ORGAN, phantom.labels == organ_label),
    ]
    title = f"synthetic phantom (seed {seed + attempt})"
    return DemoCase("phantom", title, phantom.image, objects)


def sts001_case(shared_data: Path) -> DemoCase:
    """The real STS_001 whole-body scan (DICOM, SUVbw) and its RTSTRUCT sarcoma ``GTV_Mass``."""
    from seganypet.io import load_image
    from seganypet.io.masks import load_mask

    folder = shared_data / "sts001_wholebody_ge"
    image = load_image(folder / "image")
    labels, _ = load_mask(folder / "mask" / "1-1.dcm", image, roi_names=["GTV_Mass"])
    objects = [DemoObject("GTV_Mass (sarcoma)", labels > 0)]
    return DemoCase("sts001", "STS_001, real FDG PET (TCIA, CC BY 3.0)", image, objects)


def segment_case(
    network: PromptableNetwork,
    case: DemoCase,
    clicks: int,
    small_object_network: PromptableNetwork | None = None,
) -> None:
    """Segment every object of ``case`` with up to ``clicks`` simulated clicks each."""
    session = Session(network, small_object_network=small_object_network)
    session.set_image(case.image)
    for index, obj in enumerate(case.objects):
        if index:
            session.new_object(obj.name)
        else:
            session.current.name = obj.name
        user = ErrorCentreUser(obj.truth, case.image.spacing)
        prediction = np.zeros(case.image.shape, dtype=bool)
        for step in range(1, clicks + 1):
            interaction = user.interaction(step, prediction)
            if not interaction.prompts:
                break
            start = time.perf_counter()
            for prompt in interaction.prompts:
                session.add(prompt)
                obj.prompts.append(prompt)
            prediction = np.asarray(session.mask, dtype=bool)
            obj.seconds_per_click.append(time.perf_counter() - start)
            obj.dice_per_click.append(dice(prediction, obj.truth))
        obj.mask = prediction


def write_case(case: DemoCase, out_dir: Path) -> None:
    """The image, label map, stats JSON and MIP figure of a segmented case."""
    labels = np.zeros(case.image.shape, dtype=np.uint8)
    names: dict[int, str] = {}
    for value, obj in enumerate(case.objects, start=1):
        labels[obj.mask & (labels == 0)] = value
        names[value] = obj.name
    case.files["image"] = write_nifti(
        case.image.array, case.image.affine, out_dir / f"{case.name}_pet.nii.gz", case.image
    )
    case.files["masks"] = save_mask(
        labels, names, case.image, out_dir / f"{case.name}_masks.nii.gz"
    )
    report = quantify(case.image, labels, names).to_dict()
    case.stats = {
        "case": case.title,
        "units": case.image.units,
        "objects": [
            {
                "label": value,
                "name": obj.name,
                "clicks": [p.to_dict() for p in obj.prompts],
                "dice_per_click": [round(d, 4) for d in obj.dice_per_click],
                "seconds_per_click": [round(s, 3) for s in obj.seconds_per_click],
            }
            for value, obj in enumerate(case.objects, start=1)
        ],
        "statistics": report,
    }
    stats_path = out_dir / f"{case.name}_stats.json"
    write_text_atomic(stats_path, json.dumps(case.stats, indent=1) + "\n")
    case.files["stats"] = stats_path
    case.files["figure"] = save_overlay_mip(case, out_dir / f"{case.name}_mip.png")


def save_overlay_mip(case: DemoCase, path: Path) -> Path:
    """Two coronal MIPs side by side: the PET alone, and with masks, truth outlines and clicks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from seganypet.synth.figures import coronal_projection, show_mip

    view = case.image.canonical()
    mip, aspect = coronal_projection(view, view.image.array)
    height = 9.0
    width = 2 * max(2.0, height * mip.shape[1] / (mip.shape[0] * aspect)) + 0.6
    fig, (plain, overlay) = plt.subplots(1, 2, figsize=(width, height + 1.2))
    show_mip(plain, case.image, "PET (coronal MIP)", MIP_WINDOW)
    show_mip(overlay, case.image, "masks (filled), reference (dashed), clicks", MIP_WINDOW)
    spacing = view.image.spacing
    extent = (0.0, mip.shape[1] * spacing[0], mip.shape[0] * spacing[2], 0.0)
    legend = []
    for index, obj in enumerate(case.objects):
        colour = OBJECT_COLOURS[index % len(OBJECT_COLOURS)]
        predicted, _ = coronal_projection(view, view.from_input(obj.mask).astype(np.float32))
        truth, _ = coronal_projection(view, view.from_input(obj.truth).astype(np.float32))
        filled = np.ma.masked_where(predicted < 0.5, predicted)
        cmap = matplotlib.colors.ListedColormap([colour])
        overlay.imshow(
            filled,
            cmap=cmap,
            alpha=0.45,
            extent=extent,
            interpolation="nearest",
            zorder=1 - 0.1 * index,
        )
        columns = (np.arange(mip.shape[1]) + 0.5) * spacing[0]
        rows = (np.arange(mip.shape[0]) + 0.5) * spacing[2]
        overlay.contour(
            columns, rows, truth, levels=[0.5], colors=[colour], linewidths=1.2, linestyles="--"
        )
        for prompt in obj.prompts:
            x, y = _mip_position(view, prompt.voxel, mip.shape)
            overlay.plot(
                x,
                y,
                marker="o" if prompt.positive else "X",
                markersize=8,
                markerfacecolor="#40c057" if prompt.positive else "#fa5252",
                markeredgecolor="black",
                linestyle="none",
            )
        dice_text = f"Dice {obj.dice_per_click[-1]:.2f}" if obj.dice_per_click else "no click"
        legend.append(
            Patch(
                facecolor=colour,
                alpha=0.6,
                label=f"{obj.name}: {len(obj.prompts)} clicks, {dice_text}",
            )
        )
    legend += [
        Line2D(
            [],
            [],
            marker="o",
            color="none",
            markerfacecolor="#40c057",
            markeredgecolor="black",
            label="positive click",
        ),
        Line2D(
            [],
            [],
            marker="X",
            color="none",
            markerfacecolor="#fa5252",
            markeredgecolor="black",
            label="negative click",
        ),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(f"seganypet demo: {case.title}, SUV window {MIP_WINDOW[0]:g}-{MIP_WINDOW[1]:g}")
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(temporary, dpi=90)
    plt.close(fig)
    os.replace(temporary, path)
    return path


def _mip_position(view, voxel: Sequence[float], mip_shape: tuple[int, int]) -> tuple[float, float]:
    """Where an input-grid voxel falls on the coronal MIP, in millimetres (x right, y down)."""
    canonical = view.voxel_from_input(np.asarray(voxel, float))
    spacing = view.image.spacing
    shape = view.image.shape
    column = shape[0] - 1 - canonical[0]  # the patient's right on the viewer's left
    row = shape[2] - 1 - canonical[2]  # head at the top
    return (column + 0.5) * spacing[0], (row + 0.5) * spacing[2]


def run_demo(
    out_dir: str | os.PathLike,
    model: str = "default",
    seed: int = 0,
    clicks: int = 3,
    real: bool = True,
    log: Callable[[str], None] = print,
) -> list[DemoCase]:
    """Run the demo cases and write their files to ``out_dir``; ``log`` gets the summary lines."""
    from seganypet.model.checkpoint import load_model, load_small_object_model
    from seganypet.model.runtime import configure_threads

    if clicks < 1:
        raise InputError(f"--clicks must be at least 1, got {clicks}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_threads(None)
    started = time.perf_counter()
    network = load_model(model)
    small_object_network = load_small_object_model(model)
    log(f"model: {network.config.description or model}")
    cases = [phantom_case(seed)]
    shared = shared_data_dir()
    if real and shared is not None and (shared / "sts001_wholebody_ge").is_dir():
        cases.append(sts001_case(shared))
    elif real:
        log("real data: ../shared/data not found, so only the synthetic phantom is run")
    for case in cases:
        segment_case(network, case, clicks, small_object_network)
        write_case(case, out_dir)
        log(_summary(case))
    log(f"wrote {out_dir} in {time.perf_counter() - started:.1f} s")
    return cases


def _summary(case: DemoCase) -> str:
    lines = [f"{case.title}:"]
    by_label = {row["label"]: row for row in case.stats["statistics"]["labels"]}
    for value, obj in enumerate(case.objects, start=1):
        dice_text = " -> ".join(f"{d:.2f}" for d in obj.dice_per_click)
        row = by_label.get(value)
        if row is None:
            lines.append(f"  {obj.name}: empty mask (Dice per click {dice_text})")
            continue
        lines.append(
            f"  {obj.name}: Dice per click {dice_text}; SUVmax {row['suv_max']:.2f}, "
            f"SUVpeak {row['suv_peak']:.2f}, MTV {row['mtv_ml']:.1f} ml, TLG {row['tlg']:.1f}"
        )
    lines.append("  files: " + ", ".join(str(p) for p in case.files.values()))
    return "\n".join(lines)
