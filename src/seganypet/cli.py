"""The `seganypet` command.

Every subcommand parses its arguments, calls the library and prints. A user mistake raises
`InputError`, which becomes one line on stderr and exit status 2: never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seganypet.cli_options import THREADS_HELP, OneLineParser, whole_number_at_least
from seganypet.errors import InputError

if TYPE_CHECKING:
    from seganypet.prompts import Box, Point

EXIT_USER_ERROR = 2

SUV_TYPES = {
    "bw": "body weight",
    "lbm": "lean body mass",
    "bsa": "body surface area",
    "ibw": "ideal body weight",
}


def _add_dicom_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "DICOM PET input (ignored for NIfTI, which must already hold SUV)"
    )
    group.add_argument(
        "--series",
        metavar="UID",
        help="SeriesInstanceUID to read when the folder holds several PT series",
    )
    group.add_argument(
        "--suv",
        choices=sorted(SUV_TYPES),
        default="bw",
        help="SUV normalisation: "
        + ", ".join(f"{k} = {v}" for k, v in SUV_TYPES.items())
        + " (default: bw)",
    )
    group.add_argument(
        "--lbm-formula",
        choices=["janmahasatian", "james"],
        default="janmahasatian",
        help="lean body mass formula for --suv lbm (default: janmahasatian; "
        "3D Slicer's PET extension uses james)",
    )
    group.add_argument(
        "--weight-kg",
        type=float,
        help="patient weight in kg, when PatientWeight is missing or wrong",
    )
    group.add_argument(
        "--height-cm", type=float, help="patient height in cm (needed by lbm, bsa and ibw)"
    )
    group.add_argument("--sex", choices=["M", "F"], help="patient sex (needed by lbm and ibw)")
    group.add_argument(
        "--dose-mbq",
        type=float,
        help="injected activity in MBq, when RadionuclideTotalDose is missing",
    )
    group.add_argument(
        "--injection-time",
        metavar="[YYYYMMDD]HHMMSS",
        help="injection date and time, when RadiopharmaceuticalStartDateTime/StartTime is missing",
    )


def _dicom_options(args: argparse.Namespace) -> dict:
    return {
        "series_uid": args.series,
        "suv_type": args.suv,
        "weight_kg": args.weight_kg,
        "height_cm": args.height_cm,
        "sex": args.sex,
        "dose_mbq": args.dose_mbq,
        "injection_time": args.injection_time,
        "lbm_formula": args.lbm_formula,
    }


def _load_image(args: argparse.Namespace):
    from seganypet.io import load_image

    return load_image(args.input, **_dicom_options(args))


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def cmd_info(args: argparse.Namespace) -> None:
    from seganypet.io import load_image
    from seganypet.io.dicom import list_dicom_series
    from seganypet.io.nifti import is_nifti_path

    is_dicom = args.input.exists() and not (args.input.is_file() and is_nifti_path(args.input))
    series = list_dicom_series(args.input) if is_dicom else []
    pet_series = [s for s in series if s.modality == "PT"]
    if len(series) > 1 and not args.json:
        print("series found:")
        for s in series:
            print(
                f"  {s.modality:8s} {s.instances:5d} instances  {s.description or '-':30s} {s.uid}"
            )
        if len(pet_series) > 1 and not args.series:
            print("several PET series: pick one with --series UID for details")
            return

    suv_refused = None
    try:
        image = _load_image(args)
    except InputError as exc:
        if not is_dicom or not pet_series:
            raise
        suv_refused = str(exc)
        image = load_image(args.input, **{**_dicom_options(args), "suv_type": None})
    meta = image.metadata
    info = {
        "source": str(args.input),
        "format": meta.get("format"),
        "modality": meta.get("modality", "PT"),
        "series_uid": meta.get("series_uid"),
        "series_description": meta.get("series_description"),
        "manufacturer": meta.get("manufacturer"),
        "shape": list(image.shape),
        "spacing_mm": [round(s, 4) for s in image.spacing],
        "units": image.units,
        "source_units": meta.get("units"),
        "suv_factor": meta.get("suv_factor") if suv_refused is None else None,
        "suv_refused": suv_refused,
        "max_value": float(image.array.max()),
    }
    if args.json:
        _print_json(info)
        return
    for key, value in info.items():
        if value is not None:
            print(f"{key:20s} {value}")


def cmd_convert(args: argparse.Namespace) -> None:
    from seganypet.io.nifti import write_nifti

    image = _load_image(args)
    write_nifti(image.array, image.affine, args.output, header_like=image)
    meta = image.metadata
    report = {
        "input": str(args.input),
        "output": str(args.output),
        "units": image.units,
        "suv_type": meta.get("suv_type", image.units),
        "suv_factor": meta.get("suv_factor", 1.0),
        "source_units": meta.get("units"),
        "tags_used": meta.get("suv_tags", {}),
        "supplied_by_user": meta.get("suv_supplied", {}),
        "shape": list(image.shape),
        "spacing_mm": list(image.spacing),
    }
    if args.json:
        _print_json(report)
    else:
        print(
            f"wrote {args.output}: {image.units}, factor {report['suv_factor']:.6g}, shape {image.shape}"
        )


def cmd_quantify(args: argparse.Namespace) -> None:
    from seganypet.atomic import write_text_atomic
    from seganypet.io.masks import load_mask
    from seganypet.quant import quantify

    image = _load_image(args)
    labels, names = load_mask(
        args.mask, image, roi_names=args.roi or None, contour_rule=args.contour_rule
    )
    report = quantify(image, labels, label_names=names).to_dict()
    text = json.dumps(report, indent=2, default=_json_default)
    if args.output:
        write_text_atomic(args.output, text + "\n")
    if args.json:
        print(text)
    else:
        _print_stats_table(report)
        if args.output:
            print(f"wrote {args.output}")


def _print_stats_table(report: dict) -> None:
    rows = report.get("labels", [])
    print(
        f"{'label':24s} {'MTV ml':>9s} {'SUVmax':>8s} {'SUVpeak':>8s} {'SUVmean':>8s} {'TLG':>10s}"
    )
    for row in rows:
        print(
            f"{str(row.get('name', row.get('label'))):24s} {row['mtv_ml']:9.2f} {row['suv_max']:8.2f} "
            f"{row['suv_peak']:8.2f} {row['suv_mean']:8.2f} {row['tlg']:10.1f}"
        )


COORDINATES_HELP = (
    "voxel indices in the order of the input image's array axes (for DICOM: column, row, slice), "
    "or world millimetres (RAS+) with --mm"
)


COORDINATE_OPTIONS = ("--point", "--box")
_STARTS_LIKE_A_NUMBER = re.compile(r"^[\[(]?[-+]?\.?\d")
_POINT_SIGN = re.compile(r"^(neg|pos)[\])]?$", re.IGNORECASE)


def join_coordinate_arguments(argv: Sequence[str]) -> list[str]:
    """``--point -44.5,-44.5,-789.7`` as one value, although it starts with a minus sign.

    argparse takes a value beginning with ``-`` for an option unless it is one plain number, so
    coordinates copied from ``quantify``'s output would be refused. A value after ``--point`` or
    ``--box`` that starts like a number is attached with ``=``; pieces copied with spaces after
    the commas (``-44.5, -44.5, -789.7``, also in brackets) are joined first.
    """
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if (
            arg in COORDINATE_OPTIONS
            and i + 1 < len(args)
            and _STARTS_LIKE_A_NUMBER.match(args[i + 1])
        ):
            value = args[i + 1]
            i += 2
            while (
                value.endswith(",")
                and i < len(args)
                and (_STARTS_LIKE_A_NUMBER.match(args[i]) or _POINT_SIGN.match(args[i]))
            ):
                value += args[i]
                i += 1
            out.append(f"{arg}={value}")
            continue
        out.append(arg)
        i += 1
    return out


def _numbers(text: str, count: int, what: str) -> list[float]:
    parts = [p.strip() for p in text.strip().strip("[]()").split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"{what} takes {count} comma-separated finite numbers, got {text!r}"
        )
    return values


def parse_point(text: str) -> Point:
    """``X,Y,Z`` for a positive click, ``X,Y,Z,neg`` for a negative one."""
    from seganypet.prompts import Point

    parts = [p.strip().lower() for p in text.strip().strip("[]()").split(",")]
    positive = True
    if len(parts) == 4:
        if parts[3] not in ("neg", "pos", "-", "+", "0", "1"):
            raise argparse.ArgumentTypeError(
                f"a point's 4th field is 'neg' or 'pos', got {parts[3]!r}"
            )
        positive = parts[3] in ("pos", "+", "1")
        parts = parts[:3]
    return Point(tuple(_numbers(",".join(parts), 3, "--point")), positive)  # type: ignore[arg-type]


def parse_box(text: str) -> Box:
    from seganypet.prompts import Box

    values = _numbers(text, 6, "--box")
    try:
        return Box(tuple(values[:3]), tuple(values[3:]))  # type: ignore[arg-type]
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _read_prompt_file(path: Path) -> tuple[list[dict], bool]:
    """Objects (name and prompts) from a JSON file; see `seganypet segment --help`."""
    from seganypet.prompts import Prompt

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such prompts file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    except ValueError:  # json's limit on the digits of an integer
        raise InputError(
            f"{path}: not a prompts file: it holds a number of thousands of digits"
        ) from None
    except RecursionError:
        raise InputError(f"{path}: not a prompts file: its JSON is nested too deeply") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the prompts file ({exc.strerror})") from None
    if isinstance(data, list):
        data = {"objects": [{"name": "object 1", "prompts": data}]}
    objects = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(objects, list) or not objects:
        raise InputError(f'{path}: expected {{"objects": [{{"name": ..., "prompts": [...]}}]}}')
    coordinates = data.get("coordinates", "voxel")
    if coordinates not in ("voxel", "mm"):
        raise InputError(f'{path}: "coordinates" is "voxel" or "mm", got {coordinates!r}')
    checked = []
    for i, obj in enumerate(objects):
        where = f"{path}: objects[{i}]"
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("prompts"), list)
            or not obj["prompts"]
        ):
            raise InputError(f"{where}: every object needs a non-empty list of prompts")
        name = obj.get("name", f"object {i + 1}")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where}: 'name' must be a non-empty string")
        prompts = [
            Prompt.from_dict(prompt, f"{where}.prompts[{j}]")
            for j, prompt in enumerate(obj["prompts"])
        ]
        checked.append({"name": name, "prompts": prompts})
    return checked, coordinates == "mm"


def cmd_segment(args: argparse.Namespace) -> None:

    from seganypet.io.masks import save_mask
    from seganypet.model import configure_threads, load_model, load_small_object_model
    from seganypet.session import Session

    if args.prompts_file and args.prompts:
        raise InputError(
            "give prompts either on the command line (--point/--box) or in --prompts, not both"
        )
    if args.prompts_file:
        objects, mm = _read_prompt_file(args.prompts_file)
        mm = mm or args.mm
    elif args.prompts:
        objects, mm = [{"name": args.name, "prompts": args.prompts}], args.mm
    else:
        raise InputError(
            "no prompt given: add --point X,Y,Z (a voxel inside the object) or --box, or --prompts FILE"
        )

    image = _load_image(args)
    configure_threads(args.threads)
    network = load_model(args.model)
    if args.reference_order:
        if not network.has_reference_order:
            raise InputError("--reference-order applies to SAM-Med3D (vit) models only")
        network.reference_order = True
    session = Session(network, small_object_network=load_small_object_model(args.model))
    session.set_image(image)

    for index, obj in enumerate(objects):
        if index:
            session.new_object(obj["name"])
        else:
            session.current.name = obj["name"]
        for prompt in obj["prompts"]:
            session.add(prompt.mapped(image.world_to_voxel) if mm else prompt)

    labels, names = session.label_map()
    save_mask(labels, names, image, args.output, format=args.format)
    summary = {
        "output": str(args.output),
        "objects": {name: int((labels == k).sum()) for k, name in names.items()},
    }
    if args.stats:
        from seganypet.atomic import write_text_atomic
        from seganypet.quant import quantify

        report = quantify(image, labels, label_names=names).to_dict()
        write_text_atomic(args.stats, json.dumps(report, indent=2, default=_json_default) + "\n")
        summary["stats"] = str(args.stats)
    for name, voxels in summary["objects"].items():
        print(f"{name}: {voxels} voxels, {voxels * image.voxel_volume_ml:.2f} ml")
    print(f"wrote {args.output}" + (f" and {args.stats}" if args.stats else ""))


def cmd_convert_checkpoint(args: argparse.Namespace) -> None:
    from seganypet.model import convert_checkpoint

    config = convert_checkpoint(args.input, args.output, description=args.description)
    print(
        f"wrote {args.output}: preset {config.preset}, {config.input_size[0]}³ crops at {config.spacing_mm[0]} mm"
    )


def cmd_synth(args: argparse.Namespace) -> None:
    from seganypet.synth.dataset import write_dataset
    from seganypet.synth.phantom import PhantomConfig

    tracer = args.tracer.upper() if args.tracer != "mixed" else "mixed"
    if args.background is not None:
        from seganypet.synth.insert import write_inserted_dataset

        if tracer == "mixed":
            raise InputError("--background: name the real scan's tracer (fdg or psma), not mixed")
        dataset_json = write_inserted_dataset(
            args.output,
            args.cases,
            args.seed,
            args.background,
            avoid_mask=args.background_mask,
            avoid_roi=args.background_roi,
            tracer=tracer,
            progress=not args.quiet,
        )
        print(f"wrote {args.cases} cases with lesions inserted into {args.background} to "
              f"{args.output} ({dataset_json.name} lists the labels)")  # fmt: skip
        return
    config = (
        PhantomConfig.wide(tracer=tracer)
        if args.variety == "wide"
        else PhantomConfig(tracer=tracer)
    )
    dataset_json = write_dataset(
        args.output,
        args.cases,
        seed=args.seed,
        config=config,
        progress=not args.quiet,
        workers=args.workers,
    )
    print(f"wrote {args.cases} phantoms to {args.output} ({dataset_json.name} lists the labels)")


def cmd_demo(args: argparse.Namespace) -> None:
    from seganypet.demo import run_demo

    run_demo(args.output, args.model, args.seed, args.clicks, real=not args.no_real)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="seganypet",
        description="Promptable 3D segmentation of whole-body PET, with SUV metrics. "
        "Voxel coordinates are indices in the order of the input image's array axes "
        "(for DICOM: column, row, slice) unless --mm is given.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], None], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("info", cmd_info, "Describe a PET image: modality, series, shape, spacing, units.")
    p.add_argument("input", type=Path, help="NIfTI file, DICOM file or folder of DICOM files")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_dicom_options(p)

    p = command("convert", cmd_convert, "Convert a PET image to a NIfTI volume in SUV.")
    p.add_argument(
        "input",
        type=Path,
        help="NIfTI file, DICOM file or folder of DICOM files (searched recursively)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output .nii or .nii.gz")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the SUV factor, units and header fields used as JSON",
    )
    _add_dicom_options(p)

    p = command(
        "quantify",
        cmd_quantify,
        "SUV metrics (SUVmax, SUVpeak, SUVmean, MTV, TLG) per label and per lesion.",
    )
    p.add_argument("input", type=Path, help="PET image: NIfTI in SUV, or DICOM PT file/folder")
    p.add_argument(
        "mask", type=Path, help="mask on the image's grid: NIfTI label map, DICOM SEG or RTSTRUCT"
    )
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.add_argument("-o", "--output", type=Path, help="write the statistics JSON here")
    p.add_argument(
        "--roi",
        action="append",
        metavar="NAME",
        help="with an RTSTRUCT mask: the ROI to quantify (repeat for several; default: all)",
    )
    p.add_argument(
        "--contour-rule",
        choices=["centre", "any-overlap"],
        default="centre",
        help="with an RTSTRUCT mask: a voxel is in the ROI when its centre is inside the contour "
        "(centre, the IBSI/MIRP rule, default) or when the contour overlaps it at all (any-overlap)",
    )
    _add_dicom_options(p)

    p = command(
        "segment",
        cmd_segment,
        "Segment objects in a PET image from point and box prompts. Coordinates are "
        + COORDINATES_HELP
        + ".",
    )
    p.add_argument(
        "-i",
        "--input",
        type=Path,
        required=True,
        help="PET image: NIfTI in SUV, or DICOM PT file/folder",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output mask: .nii.gz label map, or a .dcm DICOM SEG with --format dicom-seg",
    )
    p.add_argument(
        "--point",
        dest="prompts",
        action="append",
        type=parse_point,
        metavar="X,Y,Z[,neg]",
        help="a click inside (or with ',neg' outside) the object; repeat for more clicks. "
        + COORDINATES_HELP,
    )
    p.add_argument(
        "--box",
        dest="prompts",
        action="append",
        type=parse_box,
        metavar="X0,Y0,Z0,X1,Y1,Z1",
        help="two opposite corners of a box around the object. " + COORDINATES_HELP,
    )
    p.add_argument(
        "--prompts",
        dest="prompts_file",
        type=Path,
        metavar="FILE",
        help='JSON: {"coordinates": "voxel"|"mm", "objects": [{"name": "lesion", "prompts": '
        '[{"point": [x, y, z], "positive": true}, {"box": [x0, y0, z0, x1, y1, z1]}]}]}',
    )
    p.add_argument(
        "--mm",
        action="store_true",
        help="coordinates are world millimetres (RAS+), not voxel indices",
    )
    p.add_argument(
        "--name", default="object 1", help="name of the object segmented from --point/--box"
    )
    p.add_argument(
        "--model",
        default="default",
        help="'default' (the bundled model) or a checkpoint path (.pth or .safetensors)",
    )
    p.add_argument(
        "--format",
        choices=["nifti", "dicom-seg"],
        default="nifti",
        help="output format (dicom-seg needs a DICOM input)",
    )
    p.add_argument("--threads", type=whole_number_at_least(1), help=THREADS_HELP)
    p.add_argument(
        "--reference-order",
        action="store_true",
        help="compute attention in the reference implementation's order: its float32 results "
        "bit for bit, about 12x slower (default: the exact same function, faster)",
    )
    p.add_argument(
        "--stats",
        type=Path,
        metavar="FILE",
        help="also write SUV statistics of the objects as JSON",
    )
    _add_dicom_options(p)

    p = command(
        "convert-checkpoint",
        cmd_convert_checkpoint,
        "Convert a released SegAnyPET/SAM-Med3D .pth checkpoint to seganypet's .safetensors "
        "(never executes pickled code).",
    )
    p.add_argument(
        "input",
        type=Path,
        help="a .pth checkpoint (top-level model_state_dict or a bare state dict)",
    )
    p.add_argument("output", type=Path, help="output .safetensors (weights plus the JSON config)")
    p.add_argument(
        "--description", help="free text stored in the config (provenance of the weights)"
    )

    p = command(
        "synth",
        cmd_synth,
        "Generate synthetic whole-body FDG or PSMA PET phantoms with label maps (nnU-Net v2 raw "
        "layout).",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--cases", type=int, default=10, help="number of phantoms (default 10)")
    p.add_argument(
        "--seed", type=int, default=0, help="dataset seed: the same seed gives the same phantoms"
    )
    p.add_argument(
        "--tracer",
        choices=["fdg", "psma", "mixed"],
        default="fdg",
        help="uptake pattern: FDG (default), PSMA (hot salivary and lacrimal glands, kidneys, "
        "liver, spleen and bowel, a cold brain), or mixed (each case one of the two)",
    )
    p.add_argument(
        "--variety",
        choices=["standard", "wide"],
        default="standard",
        help="standard (default): 2-5 mm voxels, PSF 4-7 mm, spheres, ellipsoids and irregular "
        "lesions 1.8-10x their host; wide: 2-5.5 mm voxels, PSF 4-9 mm, more noise, lobulated and "
        "infiltrative lesions, necrosis in a hot rim, head-and-neck primaries, contrast 1.15-15x",
    )
    p.add_argument(
        "--workers",
        type=whole_number_at_least(1),
        default=1,
        help="processes generating phantoms side by side (default 1; the phantoms are the same)",
    )
    p.add_argument(
        "--background",
        metavar="IMAGE",
        help="insert lesions (wide variety) into this real PET scan (NIfTI in SUV, or DICOM) "
        "instead of drawing phantoms; each case is one copy with its own lesions",
    )
    p.add_argument(
        "--background-mask",
        metavar="MASK",
        help="with --background: a region kept free of lesions and labelled ignore (a real "
        "tumour): NIfTI label map, DICOM SEG or RTSTRUCT",
    )
    p.add_argument(
        "--background-roi",
        action="append",
        metavar="NAME",
        help="with an RTSTRUCT --background-mask: the ROI(s) to avoid (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = command(
        "demo",
        cmd_demo,
        "Segment a lesion and an organ of a synthetic whole-body phantom with simulated clicks "
        "and the bundled model (and the sarcoma of the real STS_001 scan when ../shared/data is "
        "present); writes images, masks, SUV statistics and coronal MIP figures.",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("seganypet-demo"),
        help="output folder (default ./seganypet-demo)",
    )
    p.add_argument("--model", default="default", help="model name or checkpoint (default: default)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument("--clicks", type=int, default=3, help="simulated clicks per object (default 3)")
    p.add_argument("--no-real", action="store_true", help="skip the real STS_001 case")

    from seganypet.bench import add_bench_parser
    from seganypet.evaluate.command import add_evaluate_parser
    from seganypet.server.command import add_serve_parser
    from seganypet.train.command import add_train_parser

    add_train_parser(sub)
    add_bench_parser(sub)
    add_serve_parser(sub)
    add_evaluate_parser(sub)
    return parser


def _version() -> str:
    from seganypet import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_coordinate_arguments(sys.argv[1:] if argv is None else argv))

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"seganypet {args.command}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show_warning
    try:
        args.func(args)
    except InputError as exc:
        print(f"seganypet {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"seganypet {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
