"""``seganypet segment``: objects of one PET image from prompts on the command line or in a file.

The prompts go through :class:`~seganypet.session.Session` exactly as a reader's clicks do in
the viewer; the label map is written as NIfTI or DICOM SEG, and the statistics as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seganypet.cli_options import (
    add_command,
    add_dicom_options,
    add_model_option,
    add_threads_option,
    load_input_image,
)
from seganypet.errors import InputError

if TYPE_CHECKING:
    from seganypet.prompts import Box, Point


def add_segment_parser(subparsers) -> None:
    """Register ``segment`` on the ``seganypet`` subparsers."""
    p = add_command(
        subparsers,
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
        '[{"point": [x, y, z], "positive": true}, {"box": [x0, y0, z0, x1, y1, z1]}]}]}, or an '
        'autoPET IV click file {"tumor": [[x, y, z], ...], "background": [[x, y, z], ...]} '
        "(voxel indices: one object, 'lesions', from its positive then negative clicks)",
    )
    p.add_argument(
        "--mm",
        action="store_true",
        help="coordinates are world millimetres (RAS+), not voxel indices",
    )
    p.add_argument(
        "--name", default="object 1", help="name of the object segmented from --point/--box"
    )
    add_model_option(p)
    p.add_argument(
        "--format",
        choices=["nifti", "dicom-seg"],
        default="nifti",
        help="output format (dicom-seg needs a DICOM input)",
    )
    add_threads_option(p)
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
    add_dicom_options(p)


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


def cmd_segment(args: argparse.Namespace) -> None:

    from seganypet.io.masks import save_mask
    from seganypet.model import configure_threads
    from seganypet.prompts import read_prompt_file
    from seganypet.session import open_session, segment_objects

    if args.prompts_file and args.prompts:
        raise InputError(
            "give prompts either on the command line (--point/--box) or in --prompts, not both"
        )
    if args.prompts_file:
        objects, mm = read_prompt_file(args.prompts_file)
        mm = mm or args.mm
    elif args.prompts:
        objects, mm = [{"name": args.name, "prompts": args.prompts}], args.mm
    else:
        raise InputError(
            "no prompt given: add --point X,Y,Z (a voxel inside the object) or --box, or --prompts FILE"
        )

    image = load_input_image(args)
    configure_threads(args.threads)
    session = open_session(args.model, reference_order=args.reference_order)
    labels, names = segment_objects(session, image, objects, mm=mm)
    save_mask(labels, names, image, args.output, format=args.format)
    summary = {
        "output": str(args.output),
        "objects": {name: int((labels == k).sum()) for k, name in names.items()},
    }
    if args.stats:
        from seganypet.atomic import json_default, write_text_atomic
        from seganypet.quant import quantify

        report = quantify(image, labels, label_names=names).to_dict()
        write_text_atomic(args.stats, json.dumps(report, indent=2, default=json_default) + "\n")
        summary["stats"] = str(args.stats)
    for name, voxels in summary["objects"].items():
        print(f"{name}: {voxels} voxels, {voxels * image.voxel_volume_ml:.2f} ml")
    print(f"wrote {args.output}" + (f" and {args.stats}" if args.stats else ""))
