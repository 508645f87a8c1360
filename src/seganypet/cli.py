"""The `seganypet` command.

Every subcommand parses its arguments, calls the library and prints. A user mistake raises
`InputError`, which becomes one line on stderr and exit status 2: never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from seganypet.errors import InputError

EXIT_USER_ERROR = 2

SUV_TYPES = {"bw": "body weight", "lbm": "lean body mass", "bsa": "body surface area", "ibw": "ideal body weight"}


def _add_dicom_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DICOM PET input (ignored for NIfTI, which must already hold SUV)")
    group.add_argument("--series", metavar="UID", help="SeriesInstanceUID to read when the folder holds several PT series")
    group.add_argument(
        "--suv",
        choices=sorted(SUV_TYPES),
        default="bw",
        help="SUV normalisation: " + ", ".join(f"{k} = {v}" for k, v in SUV_TYPES.items()) + " (default: bw)",
    )
    group.add_argument("--weight-kg", type=float, help="patient weight in kg, when PatientWeight is missing or wrong")
    group.add_argument("--height-cm", type=float, help="patient height in cm (needed by lbm, bsa and ibw)")
    group.add_argument("--sex", choices=["M", "F"], help="patient sex (needed by lbm and ibw)")
    group.add_argument("--dose-mbq", type=float, help="injected activity in MBq, when RadionuclideTotalDose is missing")
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
    image = _load_image(args)
    meta = image.metadata
    info = {
        "source": str(args.input),
        "format": meta.get("format"),
        "modality": meta.get("modality", "PT"),
        "series_uid": meta.get("series_uid"),
        "series_description": meta.get("series_description"),
        "shape": list(image.shape),
        "spacing_mm": [round(s, 4) for s in image.spacing],
        "units": image.units,
        "suv_factor": meta.get("suv_factor"),
        "suv_max": float(image.array.max()),
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
        print(f"wrote {args.output}: {image.units}, factor {report['suv_factor']:.6g}, shape {image.shape}")


def cmd_quantify(args: argparse.Namespace) -> None:
    from seganypet.io.atomic import write_text_atomic
    from seganypet.io.masks import load_mask
    from seganypet.quant import quantify

    image = _load_image(args)
    labels, names = load_mask(args.mask, image)
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
    print(f"{'label':24s} {'MTV ml':>9s} {'SUVmax':>8s} {'SUVpeak':>8s} {'SUVmean':>8s} {'TLG':>10s}")
    for row in rows:
        print(
            f"{str(row.get('name', row.get('label'))):24s} {row['mtv_ml']:9.2f} {row['suv_max']:8.2f} "
            f"{row['suv_peak']:8.2f} {row['suv_mean']:8.2f} {row['tlg']:10.1f}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seganypet",
        description="Promptable 3D segmentation of whole-body PET, with SUV metrics. "
        "Voxel coordinates are indices in the order of the input image's array axes "
        "(for DICOM: column, row, slice) unless --mm is given.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("info", cmd_info, "Describe a PET image: modality, series, shape, spacing, units.")
    p.add_argument("input", type=Path, help="NIfTI file, DICOM file or folder of DICOM files")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_dicom_options(p)

    p = command("convert", cmd_convert, "Convert a PET image to a NIfTI volume in SUV.")
    p.add_argument("input", type=Path, help="NIfTI file, DICOM file or folder of DICOM files (searched recursively)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .nii or .nii.gz")
    p.add_argument("--json", action="store_true", help="print the SUV factor, units and header fields used as JSON")
    _add_dicom_options(p)

    p = command("quantify", cmd_quantify, "SUV metrics (SUVmax, SUVpeak, SUVmean, MTV, TLG) per label and per lesion.")
    p.add_argument("input", type=Path, help="PET image: NIfTI in SUV, or DICOM PT file/folder")
    p.add_argument("mask", type=Path, help="mask on the image's grid: NIfTI label map, DICOM SEG or RTSTRUCT")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.add_argument("-o", "--output", type=Path, help="write the statistics JSON here")
    _add_dicom_options(p)

    return parser


def _version() -> str:
    from seganypet import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
