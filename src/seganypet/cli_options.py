"""What the subcommands' parsers share: argument types (argparse turns their errors into one
line), the options several commands take (``--model``, ``--threads``, ``--log-level``, the DICOM
SUV options, the DICOMweb server), defined once here, and JSON printing.

Importing this module imports nothing heavy: every parser is built when ``seganypet --help`` runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from seganypet.io.dicomweb import DicomwebSettings


class OneLineParser(argparse.ArgumentParser):
    """A parser whose mistakes are one line on stderr and exit status 2, like every other
    refused input (argparse would print the whole usage first). Subcommand parsers made with
    ``add_subparsers`` inherit it."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.splitlines())  # an argument may hold a line break
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def whole_number_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
        return value

    return parse


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    value = whole_number_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {value}")
    return value


THREADS_HELP = "torch threads (default: SEGANYPET_NUM_THREADS or all cores)"
MODEL_HELP = (
    "'default' (the bundled model) or a checkpoint file: seganypet's .safetensors, or a released "
    "SegAnyPET/SAM-Med3D .pth (read without running pickled code)"
)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
SUV_TYPES = {
    "bw": "body weight",
    "lbm": "lean body mass",
    "bsa": "body surface area",
    "ibw": "ideal body weight",
}


def add_model_option(
    parser: argparse.ArgumentParser, *, default: str | None = "default", more: str = ""
) -> None:
    """``--model``: the bundled model or a checkpoint (``more`` adds what this command allows)."""
    shown = f" (default: {default})" if default is not None else ""
    parser.add_argument("--model", default=default, metavar="MODEL", help=MODEL_HELP + more + shown)


def add_threads_option(parser: argparse.ArgumentParser, *, more: str = "") -> None:
    """``--threads N``: torch's threads in this process."""
    parser.add_argument(
        "--threads", type=whole_number_at_least(1), metavar="N", help=THREADS_HELP + more
    )


def add_log_level_option(parser: argparse.ArgumentParser) -> None:
    """``--log-level``: what the command (and the web server under ``serve``) logs to stderr."""
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=LOG_LEVELS,
        help="messages logged to stderr (default: warning)",
    )


def configure_logging(level: str) -> None:
    """Log at ``level`` to stderr, each line prefixed with the logger's name."""
    logging.basicConfig(level=level.upper(), format="%(name)s: %(levelname)s: %(message)s")


def add_dicom_options(parser: argparse.ArgumentParser) -> None:
    """The SUV options of a DICOM PET input (NIfTI inputs must already hold SUV)."""
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


def dicom_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`seganypet.io.load_image` from :func:`add_dicom_options`."""
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


def add_dicomweb_options(parser: argparse.ArgumentParser, use: str) -> None:
    """``--dicomweb URL`` and its authentication; ``use`` says what the command does with it."""
    from seganypet.io.dicomweb import PASSWORD_VARIABLE, TOKEN_VARIABLE

    group = parser.add_argument_group("DICOMweb server (a PACS)")
    group.add_argument(
        "--dicomweb",
        metavar="URL",
        help=f"the DICOMweb service's root, such as http://pacs:8042/dicom-web: {use}",
    )
    group.add_argument(
        "--dicomweb-user",
        metavar="USER",
        help=f"HTTP basic authentication; the password comes from {PASSWORD_VARIABLE} (asked "
        "for at a terminal when unset), never from the command line",
    )
    group.add_argument(
        "--dicomweb-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help=f"a header sent with every request (repeatable); a bearer token is best given in "
        f"{TOKEN_VARIABLE}, which sends 'Authorization: Bearer <token>'",
    )


def dicomweb_settings(args: argparse.Namespace) -> DicomwebSettings | None:
    """The :class:`~seganypet.io.dicomweb.DicomwebSettings` of :func:`add_dicomweb_options`, or
    None without ``--dicomweb``."""
    from seganypet.errors import InputError
    from seganypet.io.dicomweb import DicomwebSettings

    if not args.dicomweb:
        if args.dicomweb_user or args.dicomweb_header:
            raise InputError("--dicomweb-user and --dicomweb-header need --dicomweb URL")
        return None
    return DicomwebSettings.from_options(args.dicomweb, args.dicomweb_user, args.dicomweb_header)


def load_input_image(args: argparse.Namespace):
    """The command's ``input`` image in SUV, read with its DICOM options."""
    from seganypet.io import load_image

    return load_image(args.input, **dicom_options(args))


def print_json(obj: object) -> None:
    from seganypet.atomic import json_default

    print(json.dumps(obj, indent=2, default=json_default))


def add_command(
    subparsers, name: str, func: Callable[[argparse.Namespace], None], help: str
) -> argparse.ArgumentParser:
    """A subcommand whose one-line help is also its description; ``func`` runs it."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(func=func)
    return parser
