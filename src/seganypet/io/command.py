"""The image and mask commands: ``info``, ``convert`` (DICOM to SUV NIfTI) and ``quantify``.

None of them imports torch: they answer as fast as the files can be read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seganypet.cli_options import (
    add_command,
    add_dicom_options,
    dicom_options,
    load_input_image,
    print_json,
)
from seganypet.errors import InputError


def add_io_parsers(subparsers) -> None:
    """Register ``info``, ``convert`` and ``quantify`` on the ``seganypet`` subparsers."""
    p = add_command(
        subparsers,
        "info",
        cmd_info,
        "Describe a PET image: modality, series, shape, spacing, units.",
    )
    p.add_argument("input", type=Path, help="NIfTI file, DICOM file or folder of DICOM files")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_dicom_options(p)

    p = add_command(
        subparsers, "convert", cmd_convert, "Convert a PET image to a NIfTI volume in SUV."
    )
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
    add_dicom_options(p)

    p = add_command(
        subparsers,
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
    add_dicom_options(p)


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
        image = load_input_image(args)
    except InputError as exc:
        if not is_dicom or not pet_series:
            raise
        suv_refused = str(exc)
        image = load_image(args.input, **{**dicom_options(args), "suv_type": None})
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
        print_json(info)
        return
    for key, value in info.items():
        if value is not None:
            print(f"{key:20s} {value}")


def cmd_convert(args: argparse.Namespace) -> None:
    from seganypet.io.nifti import write_nifti

    image = load_input_image(args)
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
        print_json(report)
    else:
        print(
            f"wrote {args.output}: {image.units}, factor {report['suv_factor']:.6g}, shape {image.shape}"
        )


def cmd_quantify(args: argparse.Namespace) -> None:
    from seganypet.atomic import json_default, write_text_atomic
    from seganypet.io.masks import load_mask
    from seganypet.quant import quantify

    image = load_input_image(args)
    labels, names = load_mask(
        args.mask, image, roi_names=args.roi or None, contour_rule=args.contour_rule
    )
    report = quantify(image, labels, label_names=names).to_dict()
    text = json.dumps(report, indent=2, default=json_default)
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
