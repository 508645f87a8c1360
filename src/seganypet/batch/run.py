"""Running a cohort: what each worker does with one study, and what the coordinator does with
the manifest, the outputs and the record of what is done.

A worker (:func:`run_study`) loads the model once (:func:`worker_session`), then for each study:
reads the image in SUV, segments its objects through :func:`seganypet.session.segment_objects`
(exactly as ``seganypet segment`` does), writes the label map (write then rename), and returns
the study's statistics rows; a study it cannot use comes back as a failure with its reason.

The coordinator (:func:`run_batch`) reads the manifest, computes each study's *key* (a SHA-256 of
its input files' contents, its prompts, the model's weights and the options that change the
result), skips a study whose record in ``OUT/records`` holds that key, hands the others to an
engine, writes each study's record once its outputs are in place, and at the end (or on Ctrl-C)
the statistics and failures tables. A study on a DICOMweb server (``--dicomweb``) is fetched by
the coordinator into ``OUT/.dicomweb/<study>`` (its key hashes the fetched instances: their
SOPInstanceUIDs and contents) and its DICOM SEG stored back by the coordinator too (STOW-RS)
before its record is written; workers never talk to the server. Outputs under ``OUT``::

    masks/<study>.nii.gz (or .dcm, DICOM SEG)   records/<study>.json   statistics.csv
    statistics.parquet   failures.csv
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from seganypet.batch.manifest import DicomwebSource, RowFailure, StudySpec, read_manifest
from seganypet.errors import InputError

if TYPE_CHECKING:
    from seganypet.io.dicomweb import DicomwebServer, DicomwebSettings
    from seganypet.model.files import ModelFingerprint
    from seganypet.session import Session

log = logging.getLogger(__name__)

#: Part of every study's key: raise it when the outputs of the same inputs change.
RESULTS_VERSION = 1
MASKS_DIR = "masks"
RECORDS_DIR = "records"
FETCHED_DIR = ".dicomweb"
STATISTICS_CSV = "statistics.csv"
STATISTICS_PARQUET = "statistics.parquet"
FAILURES_CSV = "failures.csv"
MASK_SUFFIXES = {"nifti": ".nii.gz", "dicom-seg": ".dcm"}
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker loads once: the model and its threads."""

    model: str
    threads: int | None = None
    reference_order: bool = False


@dataclass(frozen=True)
class StudyJob:
    """One study handed to a worker: what to read and segment, and where to write its mask."""

    spec: StudySpec
    key: str
    mask_path: Path
    mask_format: str
    setup: WorkerSetup
    model_sha256: str


@dataclass
class StudyOutcome:
    """What a worker returns for one study: its statistics rows, or why it failed."""

    study: str
    source: str
    reason: str | None = None
    statistics: list[dict[str, Any]] = field(default_factory=list)
    mask: str | None = None
    seconds: float = 0.0
    worker: str = ""

    @property
    def failed(self) -> bool:
        return self.reason is not None

    @classmethod
    def failure(cls, job: StudyJob, reason: str) -> StudyOutcome:
        """A study that no worker finished, and why."""
        spec = job.spec
        return cls(study=spec.name, source=spec.origin, reason=f"{spec.where}: {reason}")


class Engine(Protocol):
    """Where studies run: this machine's cores, or a cluster. ``run`` yields each study's outcome
    as it completes; leaving the ``with`` block stops handing out studies."""

    name: str

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def run(self, jobs: Sequence[StudyJob]) -> Iterator[StudyOutcome]: ...


# ------------------------------------------------------------------------------ the worker

_loaded_sessions: dict[WorkerSetup, Session] = {}


def worker_session(setup: WorkerSetup) -> Session:
    """This process's session on ``setup``'s model, loaded on first use and kept (only the
    latest: a long-lived cluster worker given another model lets the previous one go)."""
    if setup not in _loaded_sessions:
        from seganypet.model.runtime import configure_threads
        from seganypet.session import open_session

        _loaded_sessions.clear()
        keep_freed_memory_for_reuse()
        configure_threads(setup.threads)
        _loaded_sessions[setup] = open_session(setup.model, reference_order=setup.reference_order)
    return _loaded_sessions[setup]


#: glibc's mallopt parameters, and the values that give back its default speed.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD_BYTES = 1 << 30
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest


def keep_freed_memory_for_reuse() -> None:
    """Let this worker process keep freed memory for its next arrays (glibc's mallopt).

    A study allocates and frees the same large arrays again and again. A dask nanny starts its
    worker with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive thresholds: every
    array over 128 KiB is then mapped afresh from the kernel and faulted in page by page, which
    doubled a study's time here (0.19 s to 0.39 s a crop, measured). Where the C library is not
    glibc, nothing changes.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_study(job: StudyJob) -> StudyOutcome:
    """Segment one study on this worker; a study that cannot be used comes back as a failure."""
    started = time.perf_counter()
    spec = job.spec
    outcome = StudyOutcome(study=spec.name, source=spec.origin, worker=worker_name())
    try:
        outcome.statistics, outcome.mask = _segment_and_measure(job)
    except InputError as exc:
        outcome.reason = f"{spec.where}: {exc}"
    except Exception as exc:  # one study's crash must not stop the cohort
        log.exception("study %s failed", spec.name)
        outcome.reason = f"{spec.where}: {type(exc).__name__}: {exc}"
    outcome.seconds = time.perf_counter() - started
    return outcome


def _segment_and_measure(job: StudyJob) -> tuple[list[dict[str, Any]], str]:
    from seganypet.io import load_image
    from seganypet.io.masks import save_mask
    from seganypet.quant import quantify
    from seganypet.session import Session, segment_objects

    spec = job.spec
    loaded = worker_session(job.setup)
    session = Session(loaded.network, small_object_network=loaded.small_object_network)
    image = load_image(spec.source, **spec.load_options)
    labels, names = segment_objects(session, image, spec.objects, mm=spec.mm)
    save_mask(labels, names, image, job.mask_path, format=job.mask_format)
    report = quantify(image, labels, label_names=names).to_dict()
    rows = statistics_rows(report, spec, names, job.setup.model, job.model_sha256)
    return rows, str(job.mask_path)


STATISTICS_COLUMNS = {
    "study": str,
    "object": str,
    "label": int,
    "level": str,
    "lesion": int,
    "lesion_count": int,
    "voxels": int,
    "volume_ml": float,
    "mtv_ml": float,
    "suv_mean": float,
    "suv_max": float,
    "suv_peak": float,
    "tlg": float,
    "suv_max_voxel": str,
    "units": str,
    "model": str,
    "model_sha256": str,
}
_MEASURES = ("voxels", "volume_ml", "mtv_ml", "suv_mean", "suv_max", "suv_peak", "tlg")


def statistics_rows(
    report: dict[str, Any],
    spec: StudySpec,
    names: dict[int, str],
    model: str,
    model_sha256: str,
) -> list[dict[str, Any]]:
    """One row per object (``level`` object) and per connected lesion of it (``level`` lesion),
    from :meth:`seganypet.quant.QuantReport.to_dict`. An object whose mask came out empty has a
    row of zero volume and no SUV values."""
    common = {"study": spec.name, "units": report["units"]["suv"], "model": model}
    common["model_sha256"] = model_sha256
    measured = {record["label"]: record for record in report["labels"]}
    rows = []
    for label, name in sorted(names.items()):
        record = measured.get(label)
        if record is None:
            empty = {key: None for key in STATISTICS_COLUMNS} | {"voxels": 0, "lesion_count": 0}
            empty |= {"volume_ml": 0.0, "mtv_ml": 0.0, "tlg": 0.0}
            rows.append(empty | common | {"object": name, "label": label, "level": "object"})
            continue
        rows.append(
            _row(record, common | {"object": name, "label": label, "level": "object"})
            | {"lesion_count": record["lesion_count"], "lesion": None}
        )
        for lesion in record.get("lesions", []):
            rows.append(
                _row(lesion, common | {"object": name, "label": label, "level": "lesion"})
                | {"lesion": lesion["lesion"], "lesion_count": None}
            )
    return rows


def _row(record: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    row = {key: None for key in STATISTICS_COLUMNS} | identity
    row |= {key: record[key] for key in _MEASURES}
    row["suv_max_voxel"] = json.dumps(record["suv_max_voxel"])
    return row


# ------------------------------------------------------------------------------ keys


def inputs_sha256(source: Path) -> str:
    """A SHA-256 of a study's input files: the file's contents, or for a folder every file under
    it (its path relative to the folder, then its contents, in sorted order)."""
    digest = hashlib.sha256()
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(source).as_posix() if path != source else path.name
        digest.update(relative.encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def study_key(
    spec: StudySpec,
    model: ModelFingerprint,
    mask_format: str,
    setup: WorkerSetup,
    dicomweb_url: str | None = None,
) -> str:
    """What decides whether a study is done: its inputs, prompts, model and options, hashed.
    A DICOMweb study's inputs are the instances fetched into its folder, and its key also
    names the series and the server its SEG is stored on (``dicomweb_url``)."""
    what = {
        "results_version": RESULTS_VERSION,
        "inputs": inputs_sha256(spec.source),
        "objects": [
            {"name": obj["name"], "prompts": [p.to_dict() for p in obj["prompts"]]}
            for obj in spec.objects
        ],
        "mm": spec.mm,
        "model": model.sha256,
        "small_object_model": model.companion_sha256,
        "reference_order": setup.reference_order,
        # a NIfTI study holds SUV already: the DICOM SUV options do not change it
        "load_options": spec.load_options if spec.is_dicom else {},
        "mask_format": mask_format,
    }
    if spec.dicomweb is not None:
        what["dicomweb"] = {"url": dicomweb_url, "series": str(spec.dicomweb)}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------ the coordinator


@dataclass
class BatchSummary:
    """What a batch did: the studies segmented now, skipped as done, and failed."""

    out: Path
    segmented: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)
    interrupted: bool = False
    engine: str = ""
    workers: int = 0
    seconds: float = 0.0

    @property
    def studies_per_minute(self) -> float:
        return 60.0 * len(self.segmented) / self.seconds if self.seconds > 0 else 0.0


class BatchOutput:
    """The output folder: masks, per-study records (what is done), and the two tables."""

    def __init__(self, out: Path):
        self.out = out
        self.masks = out / MASKS_DIR
        self.records = out / RECORDS_DIR
        self.fetched = out / FETCHED_DIR
        for folder in (self.masks, self.records):
            folder.mkdir(parents=True, exist_ok=True)
            for leftover in folder.glob(".*.tmp*"):  # a killed run's unfinished write
                leftover.unlink(missing_ok=True)

    def mask_path(self, name: str, mask_format: str) -> Path:
        return self.masks / f"{name}{MASK_SUFFIXES[mask_format]}"

    def record_path(self, name: str) -> Path:
        return self.records / f"{name}.json"

    def record(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.record_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def done(self, name: str, key: str) -> dict[str, Any] | None:
        """The study's record if it holds ``key`` and its mask is still there."""
        record = self.record(name)
        if record is None or record.get("key") != key:
            return None
        if not (self.out / record.get("mask", "")).is_file():
            return None
        return record

    def write_record(
        self, job: StudyJob, outcome: StudyOutcome, stored: dict[str, str] | None = None
    ) -> dict[str, Any]:
        from seganypet.atomic import json_default, write_text_atomic

        record = {
            "study": outcome.study,
            "key": job.key,
            "source": outcome.source,
            "mask": Path(job.mask_path).relative_to(self.out).as_posix(),
            "model": job.setup.model,
            "model_sha256": job.model_sha256,
            "seconds": outcome.seconds,
            "worker": outcome.worker,
            "statistics": outcome.statistics,
        }
        if stored is not None:
            record["stored"] = stored
        text = json.dumps(record, indent=1, default=json_default) + "\n"
        write_text_atomic(self.record_path(outcome.study), text)
        return record

    def write_tables(self, records: list[dict[str, Any]], failures: list[RowFailure]) -> None:
        from seganypet.batch.tables import write_csv, write_parquet

        rows = [row for record in records for row in record["statistics"]]
        write_csv(self.out / STATISTICS_CSV, rows, list(STATISTICS_COLUMNS))
        write_parquet(self.out / STATISTICS_PARQUET, rows, STATISTICS_COLUMNS)
        failure_rows = [asdict(failure) for failure in failures]
        write_csv(self.out / FAILURES_CSV, failure_rows, ["study", "source", "reason"])


def run_batch(
    manifest_path: str | os.PathLike,
    out: str | os.PathLike,
    engine: Engine,
    setup: WorkerSetup,
    *,
    load_options: dict[str, Any] | None = None,
    mask_format: str = "nifti",
    progress: bool = True,
    dicomweb: DicomwebSettings | None = None,
) -> BatchSummary:
    """Segment every study of a manifest not already done, on ``engine``.

    ``load_options`` are the command line's SUV options (:func:`seganypet.cli_options.
    dicom_options`), which a row may override; ``mask_format`` ``dicom-seg`` writes a DICOM SEG
    for each DICOM study (NIfTI studies get a NIfTI label map). Rows naming DICOMweb UIDs are
    fetched from ``dicomweb`` and get a DICOM SEG, stored back there. Bad studies are recorded
    in the failures table, never raised; Ctrl-C stops handing out studies, writes the tables of
    what is done and raises KeyboardInterrupt.
    """
    from seganypet.model.files import model_fingerprint

    started = time.perf_counter()
    manifest = read_manifest(manifest_path, load_options or {})
    model = model_fingerprint(setup.model)
    output = BatchOutput(Path(out).absolute())  # workers elsewhere have another cwd
    summary = BatchSummary(out=output.out, engine=engine.name)
    summary.failures.extend(manifest.failures)
    records: dict[str, dict[str, Any]] = {}
    jobs = []
    server = None
    if dicomweb is not None:
        from seganypet.io.dicomweb import DicomwebServer

        server = DicomwebServer(dicomweb)
    try:
        for spec in manifest.studies:
            study_format = mask_format if spec.is_dicom else "nifti"
            try:
                if spec.dicomweb is not None:
                    spec = fetch_dicomweb_study(spec, server, output.fetched / spec.name)
                    study_format = "dicom-seg"  # what is stored back
                url = dicomweb.url if dicomweb is not None else None
                key = study_key(spec, model, study_format, setup, url)
            except InputError as exc:
                summary.failures.append(RowFailure(spec.name, spec.origin, f"{spec.where}: {exc}"))
                continue
            except OSError as exc:
                reason = f"{spec.where}: cannot read {exc.filename} ({exc.strerror})"
                summary.failures.append(RowFailure(spec.name, spec.origin, reason))
                continue
            done = output.done(spec.name, key)
            if done is not None:
                records[spec.name] = done
                summary.skipped.append(spec.name)
                if spec.dicomweb is not None:
                    shutil.rmtree(spec.source, ignore_errors=True)
                continue
            mask_path = output.mask_path(spec.name, study_format)
            jobs.append(StudyJob(spec, key, mask_path, study_format, setup, model.sha256))

        if jobs:
            _run_jobs(jobs, engine, output, records, summary, progress, server)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        shutil.rmtree(output.fetched, ignore_errors=True)
        order = {spec.name: i for i, spec in enumerate(manifest.studies)}
        in_order = sorted(records.values(), key=lambda r: order.get(r["study"], len(order)))
        output.write_tables(in_order, summary.failures)
        summary.seconds = time.perf_counter() - started
    return summary


def fetch_dicomweb_study(spec: StudySpec, server: DicomwebServer | None, folder: Path) -> StudySpec:
    """The study with its PET series fetched from the DICOMweb server into ``folder``."""
    assert spec.dicomweb is not None
    if server is None:
        raise InputError(
            f"{spec.dicomweb} is a study on a DICOMweb server; give the server with "
            "seganypet batch --dicomweb URL"
        )
    series = server.find_pet_series(spec.dicomweb.study_uid, spec.dicomweb.series_uid)
    log.info("%s: fetching %s from %s", spec.name, series.key, server.url)
    server.fetch(series, folder)
    return replace(
        spec,
        source=folder,
        dicomweb=DicomwebSource(series.study_uid, series.series_uid),
        load_options={**spec.load_options, "series_uid": series.series_uid},
    )


def _run_jobs(
    jobs: list[StudyJob],
    engine: Engine,
    output: BatchOutput,
    records: dict[str, dict[str, Any]],
    summary: BatchSummary,
    progress: bool,
    server: DicomwebServer | None = None,
) -> None:
    from tqdm import tqdm

    by_name = {job.spec.name: job for job in jobs}
    with engine:
        summary.workers = getattr(engine, "workers", 0)
        bar = tqdm(
            total=len(jobs), unit="study", desc="batch", disable=not progress, dynamic_ncols=True
        )
        try:
            for outcome in engine.run(jobs):
                job = by_name[outcome.study]
                stored = None
                if not outcome.failed and job.spec.dicomweb is not None and server is not None:
                    try:
                        stored = asdict(server.store(job.mask_path))
                    except InputError as exc:
                        outcome.reason = f"{job.spec.where}: {exc}"
                if job.spec.dicomweb is not None:
                    shutil.rmtree(job.spec.source, ignore_errors=True)
                if outcome.failed:
                    summary.failures.append(
                        RowFailure(outcome.study, outcome.source, outcome.reason or "")
                    )
                else:
                    records[outcome.study] = output.write_record(job, outcome, stored)
                    summary.segmented.append(outcome.study)
                bar.update(1)
                if summary.failures:
                    bar.set_postfix(failed=len(summary.failures), refresh=False)
        finally:
            bar.close()
