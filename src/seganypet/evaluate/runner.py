"""Running an evaluation: every object of every case, with the model and/or the baselines.

For each object a fresh :class:`~seganypet.session.Session` gets the PET image and then only the
simulated user's prompts (see :mod:`seganypet.evaluate.protocols`); its crops are placed from
those prompts alone. After each step the object's mask is scored against the object's ground
truth (:mod:`seganypet.evaluate.metrics`). A step where the user finds nothing left to correct
repeats the previous scores with prompt type ``none``, so every object has ``--clicks`` steps.
The classical baselines (:mod:`seganypet.baselines`) give one step, grown from the protocol's
first click; PERCIST runs only where a liver reference exists.

Results go to ``per_step.csv`` object by object; a rerun into the same report folder skips the
(object, method) pairs already there. ``run.json`` records the settings that give the rows their
meaning (protocol, clicks, seed, object and metric rules); a rerun with other settings is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from seganypet.atomic import write_text_atomic
from seganypet.baselines import BASELINES, run_baseline
from seganypet.datasets import PromptObject, discover_cases
from seganypet.errors import InputError
from seganypet.evaluate.data import LoadedCase, load_case
from seganypet.evaluate.metrics import NSD_TOLERANCE_MM, step_metrics
from seganypet.evaluate.protocols import AUTOPET_OBJECT
from seganypet.evaluate.settings import (
    EvaluationSettings,
    RunRecord,
)
from seganypet.evaluate.table import StepRow, StepTable
from seganypet.evaluate.users import SimulatedUser, make_user, object_rng
from seganypet.image import PetImage
from seganypet.model.network import PromptableNetwork
from seganypet.prompts import Point, hottest_voxel
from seganypet.session import Session

BASELINE_STEPS = 1
PER_STEP_FILE = "per_step.csv"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "dice_vs_clicks.png"
RUN_FILE = "run.json"

SessionFactory = Callable[[PromptableNetwork], Session]


def model_method_name(model: str, flips: bool = False) -> str:
    """The method column of the model's rows: ``seganypet`` or ``seganypet:<checkpoint stem>``,
    with ``+flips`` under test-time flips."""
    suffix_flips = "+flips" if flips else ""
    if model == "default":
        return "seganypet" + suffix_flips
    name = Path(model).name
    for suffix in (".safetensors", ".pth", ".pt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return f"seganypet:{name}{suffix_flips}"


def run_evaluation(
    settings: EvaluationSettings,
    network: PromptableNetwork | None = None,
    session_factory: SessionFactory = Session,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate, write per_step.csv, summary.json and dice_vs_clicks.png; return the summary.

    ``network`` replaces loading ``settings.model`` (tests pass doubles); ``session_factory``
    builds the session for each object from the network; ``threads``: torch's threads for the
    loaded model (default: ``$SEGANYPET_NUM_THREADS`` or every core).
    """
    from seganypet.evaluate.report import build_summary, plot_dice_vs_step

    settings.check()
    clock = time.perf_counter()
    record = RunRecord(started=_now())
    sources = discover_cases(settings.data, settings.cases)
    model_method = None
    if settings.model is not None or network is not None:
        model_method = model_method_name(settings.model or "default", settings.flips)
        if network is None:
            network, record.model_load_seconds = _load_network(settings.model or "default", threads)
            small = _load_small_object_network(settings.model or "default")
            if small is not None and session_factory is Session:
                session_factory = partial(Session, small_object_network=small)
        if settings.flips:
            from seganypet.model.flips import FlipAveraged

            network = FlipAveraged(network)
    trained_on = _training_digests(network) if model_method is not None else {}
    record.training_cases_known = bool(trained_on)
    report_dir = Path(settings.report_dir)
    _prepare_report_dir(report_dir, settings)
    baseline_names = list(BASELINES) if settings.baselines else []

    def expected_steps(method: str) -> int:
        return settings.clicks if method == model_method else BASELINE_STEPS

    table = StepTable(report_dir / PER_STEP_FILE, expected_steps)
    record.dropped_incomplete_rows = table.dropped_rows
    done = table.done()

    progress = tqdm(
        total=0, unit="object", desc="evaluate", disable=not settings.progress, dynamic_ncols=True
    )
    try:
        for number, source in enumerate(sources, start=1):
            progress.set_description(f"case {number}/{len(sources)} {source.name}")
            case = load_case(
                source,
                lesion_labels=settings.lesion_labels,
                label_filter=settings.labels,
                min_object_ml=settings.min_object_ml,
                find_liver=settings.baselines,
            )
            if trained_on:
                _check_not_trained_on(case, trained_on, settings, record)
            record.cases.append(source.name)
            objects = _objects_to_score(case, settings.protocol)
            record.objects_by_case[source.name] = [obj.name for obj in objects]
            record.skipped_small_objects += case.skipped_small
            methods = _methods_for_case(case, model_method, baseline_names, record)
            progress.total += len(objects)
            progress.refresh()
            for obj in objects:
                pending = [m for m in methods if (case.source.name, obj.name, m) not in done]
                if pending:
                    rows = evaluate_object(
                        case, obj, pending, settings, network, model_method, session_factory
                    )
                    table.append(rows)
                else:
                    record.objects_resumed += 1
                progress.update(1)
    finally:
        progress.close()

    record.wall_seconds = time.perf_counter() - clock
    summary = build_summary(table.rows, settings, record, model_method, baseline_names, network)
    write_text_atomic(report_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    plot_dice_vs_step(summary, report_dir / PLOT_FILE)
    return summary


def _objects_to_score(case: LoadedCase, protocol: str) -> list[PromptObject]:
    """The case's objects; for ``autopet`` its whole tumour burden as one object."""
    if protocol != "autopet":
        return case.objects
    burden = case.tumour_burden(AUTOPET_OBJECT)
    return [] if burden is None else [burden]


def _check_not_trained_on(
    case: LoadedCase, trained_on: dict[str, str], settings: EvaluationSettings, record: RunRecord
) -> None:
    """Refuse a case the model was trained on, unless asked to score it (then it is marked)."""
    as_trained = trained_on.get(case.image.content_digest())
    if as_trained is None:
        return
    if not settings.include_training_cases:
        raise InputError(
            f"case {case.source.name}: the model was trained on this image (as {as_trained}), "
            "so its scores would not show quality on unseen data; leave it out (--cases), or "
            "give --include-training-cases to score it, marked as a training case"
        )
    record.training_cases_scored[case.source.name] = as_trained


def _training_digests(network: PromptableNetwork | None) -> dict[str, str]:
    """The image digests the model records as trained on, with the case name of each."""
    config = getattr(network, "config", None)
    return {digest: name for name, digest in getattr(config, "training_cases", ()) or ()}


def _methods_for_case(
    case: LoadedCase, model_method: str | None, baselines: Sequence[str], record: RunRecord
) -> list[str]:
    methods = [model_method] if model_method else []
    for name in baselines:
        if name == "percist" and case.liver_centre is None:
            record.percist_without_liver.append(case.source.name)
            continue
        methods.append(name)
    return methods


def evaluate_object(
    case: LoadedCase,
    obj: PromptObject,
    methods: Sequence[str],
    settings: EvaluationSettings,
    network: PromptableNetwork | None,
    model_method: str | None,
    session_factory: SessionFactory = Session,
) -> list[StepRow]:
    """Every pending method's rows for one object."""
    image = case.image
    truth = obj.mask(image.shape)
    user = make_user(
        settings.protocol,
        truth,
        image.spacing,
        rng=object_rng(settings.seed, case.source.name, obj.name),
        suv=image.array,
        steps=settings.clicks,
        first_click=settings.first_click,
    )
    rows: list[StepRow] = []
    for method in methods:
        if method == model_method:
            assert network is not None
            steps = run_model_steps(
                network,
                image,
                truth,
                user,
                steps=settings.clicks,
                tolerance_mm=settings.nsd_tolerance_mm,
                session_factory=session_factory,
            )
        else:
            seed = (
                user.baseline_seed
                if settings.baseline_seed == "first-click"
                else hottest_voxel(image.array, truth)
            )
            steps = [run_baseline_step(method, case, truth, seed, settings.nsd_tolerance_mm)]
        rows.extend(
            StepRow(
                case=case.source.name,
                object=obj.name,
                label=obj.label_name,
                method=method,
                step=step.step,
                prompt_type=step.prompt_type,
                seconds=step.seconds,
                prompt=step.prompt,
                obeyed=step.obeyed,
                **step.metrics,
            )
            for step in steps
        )
    return rows


@dataclass(frozen=True)
class StepResult:
    step: int
    prompt_type: str
    prompt: str
    seconds: float
    metrics: dict[str, float]
    obeyed: float | None = None


def run_model_steps(
    network: PromptableNetwork,
    image: PetImage,
    truth: np.ndarray,
    user: SimulatedUser,
    steps: int,
    tolerance_mm: float = NSD_TOLERANCE_MM,
    session_factory: SessionFactory = Session,
) -> list[StepResult]:
    """Drive a session with the simulated user's prompts for ``steps`` steps, scoring each."""
    session = session_factory(network)
    session.set_image(image)
    prediction = np.zeros(image.shape, dtype=bool)
    results: list[StepResult] = []
    for step in range(1, steps + 1):
        interaction = user.interaction(step, prediction)
        if not interaction.prompts:
            previous = results[-1]
            results.append(StepResult(step, "none", "", 0.0, previous.metrics))
            continue
        start = time.perf_counter()
        for prompt in interaction.prompts:
            session.add(prompt)
        prediction = np.asarray(session.mask, dtype=bool)
        seconds = time.perf_counter() - start
        metrics = step_metrics(
            prediction, truth, image.spacing, image.voxel_volume_ml, tolerance_mm
        ).to_dict()
        clicks = [click for prompt in interaction.prompts for click in prompt.clicks()]
        results.append(
            StepResult(
                step,
                interaction.prompt_type,
                interaction.describe(),
                seconds,
                metrics,
                share_of_clicks_obeyed(prediction, clicks),
            )
        )
    return results


def share_of_clicks_obeyed(prediction: np.ndarray, clicks: Sequence[Point]) -> float | None:
    """The share of ``clicks`` whose nearest voxel ``prediction`` labels as the click says."""
    if not clicks:
        return None
    top = np.asarray(prediction.shape) - 1
    obeyed = [
        bool(prediction[tuple(np.clip(np.rint(click.voxel).astype(int), 0, top))]) == click.positive
        for click in clicks
    ]
    return float(np.mean(obeyed))


def run_baseline_step(
    method: str,
    case: LoadedCase,
    truth: np.ndarray,
    seed: tuple[int, int, int],
    tolerance_mm: float = NSD_TOLERANCE_MM,
) -> StepResult:
    """One classical baseline grown from ``seed``, scored as step 1."""
    options: dict[str, Any] = {}
    if method == "percist":
        options["liver_center_voxel"] = case.liver_centre
    start = time.perf_counter()
    result = run_baseline(method, case.image, seed, **options)
    seconds = time.perf_counter() - start
    image = case.image
    metrics = step_metrics(
        result.mask, truth, image.spacing, image.voxel_volume_ml, tolerance_mm
    ).to_dict()
    prompt = f"seed ({seed[0]} {seed[1]} {seed[2]}) threshold {result.threshold:.3g}"
    if not result.ok:
        prompt += f" {result.status}"
    return StepResult(1, "seed", prompt, seconds, metrics)


def _load_network(model: str, threads: int | None) -> tuple[PromptableNetwork, float]:
    from seganypet.model import configure_threads, load_model

    configure_threads(threads)
    start = time.perf_counter()
    network = load_model(model)
    return network, time.perf_counter() - start


def _load_small_object_network(model: str) -> PromptableNetwork | None:
    from seganypet.model import load_small_object_model

    return load_small_object_model(model)


def _prepare_report_dir(report_dir: Path, settings: EvaluationSettings) -> None:
    if report_dir.exists() and not report_dir.is_dir():
        raise InputError(f"-o {report_dir}: exists and is not a folder")
    report_dir.mkdir(parents=True, exist_ok=True)
    run_file = report_dir / RUN_FILE
    meaning = settings.meaning()
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = None
        if previous != meaning:
            differences = (
                ", ".join(
                    f"{key} {previous.get(key)!r} -> {value!r}"
                    for key, value in meaning.items()
                    if previous.get(key) != value
                )
                if isinstance(previous, dict)
                else "unreadable run.json"
            )
            raise InputError(
                f"-o {report_dir}: holds results of a run with other settings ({differences}); "
                "its rows would not be comparable. Write to another folder, or delete this one"
            )
        return
    if (report_dir / PER_STEP_FILE).exists():
        raise InputError(
            f"-o {report_dir}: holds a per_step.csv without run.json, so its settings are "
            "unknown; write to another folder"
        )
    write_text_atomic(run_file, json.dumps(meaning, indent=2) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
