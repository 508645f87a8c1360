"""``seganypet synth``: synthetic whole-body PET phantoms, or lesions inserted into a real scan."""

from __future__ import annotations

import argparse
from pathlib import Path

from seganypet.cli_options import add_command, whole_number_at_least
from seganypet.errors import InputError


def add_synth_parser(subparsers) -> None:
    """Register ``synth`` on the ``seganypet`` subparsers."""
    p = add_command(
        subparsers,
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
