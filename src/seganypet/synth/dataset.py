"""Synthetic cases written as an nnU-Net v2 raw data set, resumable.

Layout of ``out_dir``::

    dataset.json                     nnU-Net fields plus tracer, units, generator version, seed, config
    imagesTr/case_0000_0000.nii.gz   PET in SUVbw, float32
    labelsTr/case_0000.nii.gz        organ and lesion labels (see seganypet.synth.labels)
    instancesTr/case_0000.nii.gz     lesion instances: 0 none, k = k-th lesion of the metadata
    metadataTr/case_0000.json        what was drawn: build, uptake, acquisition, every lesion

Case ``i`` is generated from ``case_seed(seed, i)``, so a case does not depend on how many cases
are asked for. A case is complete when its four files exist (each is written atomically, the
metadata last); a rerun with the same arguments skips complete cases.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from seganypet.atomic import json_default, write_text_atomic
from seganypet.errors import InputError
from seganypet.io.nifti import write_label_map, write_nifti
from seganypet.synth.labels import LABELS, SUV_RANGES
from seganypet.synth.phantom import (
    GENERATOR_VERSION,
    Phantom,
    PhantomConfig,
    case_seed,
    generate_phantom,
)

FILE_ENDING = ".nii.gz"


def case_name(index: int) -> str:
    return f"case_{index:04d}"


def case_paths(out_dir: Path, index: int) -> dict[str, Path]:
    name = case_name(index)
    return {
        "image": out_dir / "imagesTr" / f"{name}_0000{FILE_ENDING}",
        "labels": out_dir / "labelsTr" / f"{name}{FILE_ENDING}",
        "instances": out_dir / "instancesTr" / f"{name}{FILE_ENDING}",
        "metadata": out_dir / "metadataTr" / f"{name}.json",
    }


def dataset_description(cases: int, seed: int, config: PhantomConfig) -> dict:
    """The ``dataset.json`` of a synthetic data set."""
    return {
        "name": "seganypet_synth",
        "description": f"Synthetic whole-body {config.tracer} PET phantoms with organ and lesion "
        "labels (seganypet.synth)",
        "channel_names": {"0": "PET"},
        "labels": dict(LABELS),
        "numTraining": int(cases),
        "file_ending": FILE_ENDING,
        "tracer": config.tracer,
        "units": "SUVbw",
        "generator": "seganypet.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "config": asdict(config),
        "suv_ranges": {name: list(bounds) for name, bounds in SUV_RANGES.items()},
        "lesion_instances": "instancesTr/<case>.nii.gz: 0 = no lesion, k = lesions[k-1] of metadataTr/<case>.json",
    }


def _check_compatible(out_dir: Path, description: dict) -> None:
    """Refuse to mix cases of another seed, generator version or configuration into ``out_dir``."""
    existing_path = out_dir / "dataset.json"
    if not existing_path.exists():
        return
    try:
        existing = json.loads(existing_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{existing_path}: cannot read it ({exc}); remove it or choose another output folder"
        ) from None
    # Settings added since a data set was written take their defaults, which repeat it exactly.
    existing = {**existing, "config": {**_defaults(), **(existing.get("config") or {})}}
    for key in ("generator_version", "seed", "config"):
        if existing.get(key) != json.loads(json.dumps(description[key])):
            raise InputError(
                f"{out_dir} already holds a synthetic data set with another {key} "
                f"({existing.get(key)!r}); use the same arguments to resume it, or another output folder"
            )
    labels_dir = out_dir / "labelsTr"
    if labels_dir.is_dir():
        extra = [
            p.name
            for p in labels_dir.glob(f"case_*{FILE_ENDING}")
            if _index_of(p) >= description["numTraining"]
        ]
        if extra:
            raise InputError(
                f"{out_dir} already holds {len(extra)} case(s) beyond the {description['numTraining']} asked for "
                f"(e.g. {sorted(extra)[0]}); ask for at least as many cases, or use another output folder"
            )


def _defaults() -> dict:
    return json.loads(json.dumps(asdict(PhantomConfig())))


def _index_of(path: Path) -> int:
    try:
        return int(path.name.split("_")[1].split(".")[0])
    except (IndexError, ValueError):
        return -1


def is_complete(out_dir: Path, index: int) -> bool:
    return all(path.is_file() for path in case_paths(out_dir, index).values())


def case_metadata(phantom: Phantom, index: int, dataset_seed: int) -> dict:
    return {
        "case": case_name(index),
        "dataset_seed": int(dataset_seed),
        "case_seed": phantom.parameters["seed"],
        "shape": list(phantom.image.shape),
        "spacing_mm": list(phantom.image.spacing),
        "affine": phantom.image.affine.tolist(),
        "parameters": phantom.parameters,
        "lesions": [lesion.to_dict() for lesion in phantom.lesions],
    }


def write_case(phantom: Phantom, out_dir: Path, index: int, dataset_seed: int) -> dict[str, Path]:
    """Write one phantom's four files; the metadata, the completion mark, goes last."""
    paths = case_paths(out_dir, index)
    write_nifti(
        phantom.image.array, phantom.image.affine, paths["image"], header_like=phantom.image
    )
    write_label_map(phantom.labels, phantom.image, paths["labels"])
    write_label_map(phantom.lesion_instances, phantom.image, paths["instances"])
    text = json.dumps(case_metadata(phantom, index, dataset_seed), indent=1, default=json_default)
    write_text_atomic(paths["metadata"], text + "\n")
    return paths


def _whole_number(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise InputError(f"{what} must be a {kind} whole number, got {value!r}")
    return int(value)


def write_dataset(
    out_dir: str | os.PathLike,
    cases: int,
    seed: int = 0,
    config: PhantomConfig | None = None,
    progress: bool = True,
    workers: int = 1,
) -> Path:
    """Generate ``cases`` phantoms into ``out_dir`` (nnU-Net v2 raw layout), skipping complete ones.

    ``workers`` processes generate cases side by side (a case is the same whichever process
    draws it). Returns the path of ``dataset.json``.
    """
    cases = _whole_number(cases, "the number of cases", minimum=1)
    seed = _whole_number(seed, "the seed", minimum=0)
    config = config or PhantomConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder; choose an output folder")
    description = dataset_description(cases, seed, config)
    _check_compatible(out_dir, description)
    dataset_json = out_dir / "dataset.json"
    write_text_atomic(dataset_json, json.dumps(description, indent=1) + "\n")
    workers = _whole_number(workers, "the number of workers", minimum=1)
    missing = [index for index in range(cases) if not is_complete(out_dir, index)]
    bar = tqdm(
        total=cases, initial=cases - len(missing), desc="synthetic cases", unit="case",
        disable=not progress,
    )  # fmt: skip
    with bar:
        if workers == 1 or len(missing) < 2:
            for index in missing:
                _write_one(out_dir, index, seed, config)
                bar.update(1)
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=min(workers, len(missing))) as pool:
                jobs = [pool.submit(_write_one, out_dir, i, seed, config) for i in missing]
                for job in as_completed(jobs):
                    job.result()
                    bar.update(1)
    return dataset_json


def _write_one(out_dir: Path, index: int, seed: int, config: PhantomConfig) -> None:
    import torch

    torch.set_num_threads(1)  # one case per process: the processes share the cores
    write_case(generate_phantom(case_seed(seed, index), config), out_dir, index, seed)
