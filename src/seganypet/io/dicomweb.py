"""A PACS over DICOMweb: PET series listed (QIDO-RS), fetched into a folder (WADO-RS), DICOM SEGs
stored back (STOW-RS), through dicomweb-client (imported on first use, so that ``seganypet
--help`` stays light).

A fetched series is a folder of ``<SOPInstanceUID>.dcm`` files, read exactly as any DICOM folder
(:func:`seganypet.io.load_image`, SUV from its headers). Every failure is one
:class:`DicomwebError` line naming the server and what it refused: unreachable, a refused user
or password (HTTP 401/403), an unknown UID (404), a series that is not PET.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seganypet.errors import InputError

if TYPE_CHECKING:
    from dicomweb_client.api import DICOMwebClient

PASSWORD_VARIABLE = "SEGANYPET_DICOMWEB_PASSWORD"
TOKEN_VARIABLE = "SEGANYPET_DICOMWEB_TOKEN"
PET_MODALITY = "PT"
#: (connect, read) seconds; a whole-body series takes a while to send.
TIMEOUT_S = (10, 600)
#: Attempts of a request that failed to connect or was answered 429/503/504, backing off.
ATTEMPTS = 3
BACKOFF_MULTIPLIER_MS = 250
SERIES_FIELDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "PatientID",
    "PatientName",
    "StudyDate",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)


class DicomwebError(InputError):
    """The DICOMweb server could not be used for a study; ``status`` is the HTTP status that
    fits (404 for an unknown UID, 400 otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DicomwebSettings:
    """Where the DICOMweb service is (its root, such as ``http://pacs:8042/dicom-web``) and how
    to authenticate: a user and password (HTTP basic), and/or extra request headers (a token:
    ``Authorization: Bearer ...``). Secrets never appear in the repr."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_options(
        cls,
        url: str,
        user: str | None = None,
        headers: Sequence[str] = (),
        environ: Mapping[str, str] = os.environ,
    ) -> DicomwebSettings:
        """Settings from the command line: ``user`` with its password from
        ``SEGANYPET_DICOMWEB_PASSWORD`` (asked for at a terminal when unset), ``headers`` as
        ``NAME: VALUE`` lines, and ``SEGANYPET_DICOMWEB_TOKEN`` as a bearer token."""
        url = url.strip().rstrip("/")
        if not url.lower().startswith(("http://", "https://")) or "://" == url[-3:]:
            raise InputError(
                f"--dicomweb {url!r}: give the DICOMweb service's root URL, such as "
                "http://pacs.example.org:8042/dicom-web"
            )
        parsed = []
        for line in headers:
            name, colon, value = line.partition(":")
            if not colon or not name.strip() or not value.strip():
                raise InputError(
                    f"--dicomweb-header {line!r}: write it as 'NAME: VALUE', such as "
                    "'Authorization: Bearer <token>'"
                )
            parsed.append((name.strip(), value.strip()))
        token = environ.get(TOKEN_VARIABLE)
        if token:
            parsed.append(("Authorization", f"Bearer {token}"))
        password = None
        if user:
            password = environ.get(PASSWORD_VARIABLE)
            if password is None:
                if not sys.stdin.isatty():
                    raise InputError(
                        f"--dicomweb-user {user}: set the password in the environment variable "
                        f"{PASSWORD_VARIABLE} (it is never taken on the command line)"
                    )
                import getpass

                password = getpass.getpass(f"DICOMweb password for {user} at {url}: ")
        return cls(url, user or None, password, tuple(parsed))


@dataclass(frozen=True)
class PetSeries:
    """A PET series on the server, as QIDO-RS describes it."""

    study_uid: str
    series_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    description: str = ""
    instances: int | None = None

    @property
    def key(self) -> str:
        """The series' name in seganypet: ``dicomweb:<study UID>/<series UID>``."""
        return f"dicomweb:{self.study_uid}/{self.series_uid}"

    @property
    def label(self) -> str:
        """One line for a person: patient, date, description, slices."""
        parts = [self.patient_id or self.patient_name or "no patient ID"]
        if self.study_date:
            parts.append(self.study_date)
        if self.description:
            parts.append(self.description)
        if self.instances is not None:
            parts.append(f"{self.instances} slices")
        return " ".join(parts)


def parse_series_key(key: str) -> tuple[str, str]:
    """The study and series UIDs of a ``dicomweb:<study UID>/<series UID>`` key."""
    study_uid, slash, series_uid = key.removeprefix("dicomweb:").partition("/")
    if not key.startswith("dicomweb:") or not slash or not study_uid or not series_uid:
        raise InputError(f"{key!r}: a DICOMweb series is named dicomweb:<study UID>/<series UID>")
    return study_uid.strip(), series_uid.strip()


@dataclass(frozen=True)
class StoredInstance:
    """What STOW-RS stored: the instance's UIDs, at ``url``."""

    url: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str


class DicomwebServer:
    """One DICOMweb service (QIDO-RS, WADO-RS and STOW-RS under the same root)."""

    def __init__(self, settings: DicomwebSettings):
        self.settings = settings
        self.url = settings.url
        self._client: DICOMwebClient | None = None

    @property
    def client(self) -> DICOMwebClient:
        if self._client is None:
            import requests
            from dicomweb_client.api import DICOMwebClient

            session = requests.Session()
            if self.settings.user:
                session.auth = (self.settings.user, self.settings.password or "")
            session.headers.update(dict(self.settings.headers))
            client = DICOMwebClient(self.url, session=session, timeout=TIMEOUT_S)
            client.set_http_retry_params(
                retry=True, max_attempts=ATTEMPTS, wait_exponential_multiplier=BACKOFF_MULTIPLIER_MS
            )
            self._client = client
        return self._client

    # ------------------------------------------------------------------ QIDO-RS
    def pet_series(self, study_uid: str | None = None) -> list[PetSeries]:
        """Every PET series on the server (or in one study), as QIDO-RS lists them."""
        where = f"study {study_uid}" if study_uid else "the PET series"
        with self._answering(f"the search for {where}"):
            found = self.client.search_for_series(
                study_instance_uid=study_uid,
                search_filters={"Modality": PET_MODALITY},
                fields=list(SERIES_FIELDS),
            )
        return [_series(item) for item in found]

    def find_pet_series(self, study_uid: str, series_uid: str | None = None) -> PetSeries:
        """The PET series named by its study (and series) UID. A study holding several PET
        series needs the series UID; a series of another modality is refused."""
        with self._answering(f"the search for study {study_uid}"):
            found = self.client.search_for_series(
                study_instance_uid=study_uid, fields=list(SERIES_FIELDS)
            )
        series = [_series(item) for item in found]
        modalities = {s.series_uid: _modality(item) for s, item in zip(series, found, strict=True)}
        if not series:
            raise DicomwebError(f"no study {study_uid} on the DICOMweb server at {self.url}", 404)
        pet = [s for s in series if modalities[s.series_uid] == PET_MODALITY]
        if series_uid is not None:
            chosen = [s for s in series if s.series_uid == series_uid]
            if not chosen:
                raise DicomwebError(
                    f"no series {series_uid} in study {study_uid} on the DICOMweb server at "
                    f"{self.url}; {_pet_hint(pet)}",
                    404,
                )
            modality = modalities[series_uid]
            if modality != PET_MODALITY:
                raise DicomwebError(
                    f"series {series_uid} of study {study_uid} on {self.url} is "
                    f"{modality or 'without a Modality'}, not PET (Modality PT); {_pet_hint(pet)}"
                )
            return chosen[0]
        if len(pet) == 1:
            return pet[0]
        if not pet:
            kinds = ", ".join(sorted({m or "unknown" for m in modalities.values()}))
            raise DicomwebError(
                f"study {study_uid} on {self.url} holds no PET series (only {kinds}); name a "
                "study with a PT series"
            )
        raise DicomwebError(
            f"study {study_uid} on {self.url} holds {len(pet)} PET series; {_pet_hint(pet)}. "
            "Name one with dicomweb_series_uid"
        )

    # ------------------------------------------------------------------ WADO-RS
    def fetch(self, series: PetSeries, folder: str | os.PathLike) -> list[Path]:
        """Retrieve every instance of ``series`` into ``folder`` as ``<SOPInstanceUID>.dcm``
        (replacing what the folder held only once the whole series has arrived)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            names = []
            with self._answering(f"the retrieval of series {series.series_uid}"):
                for dataset in self.client.iter_series(series.study_uid, series.series_uid):
                    name = f"{_safe_uid(dataset.get('SOPInstanceUID', ''))}.dcm"
                    dataset.save_as(partial / name, enforce_file_format=True)
                    names.append(name)
            if not names:
                raise DicomwebError(
                    f"series {series.series_uid} on {self.url} sent no instances", 404
                )
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return [folder / name for name in sorted(names)]

    # ------------------------------------------------------------------ STOW-RS
    def store(self, path: str | os.PathLike) -> StoredInstance:
        """Send one DICOM file (a SEG) to the server; refused instances are a DicomwebError."""
        import pydicom

        dataset = pydicom.dcmread(path)
        what = f"storing {dataset.get('Modality', 'DICOM')} {dataset.SOPInstanceUID}"
        with self._answering(what):
            answer = self.client.store_instances([dataset])
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "unknown")
            raise DicomwebError(
                f"the DICOMweb server at {self.url} refused {what} (failure reason {reason})"
            )
        return StoredInstance(
            self.url,
            str(dataset.StudyInstanceUID),
            str(dataset.SeriesInstanceUID),
            str(dataset.SOPInstanceUID),
        )

    # ------------------------------------------------------------------ errors
    @contextmanager
    def _answering(self, what: str) -> Iterator[None]:
        """Turn what requests raises into one line naming the server and the request."""
        import requests

        try:
            yield
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise DicomwebError(
                    f"the DICOMweb server at {self.url} refused {what} (HTTP {status}): wrong or "
                    f"missing credentials; give --dicomweb-user with {PASSWORD_VARIABLE}, or a "
                    f"token in {TOKEN_VARIABLE} or --dicomweb-header"
                ) from None
            if status == 404:
                raise DicomwebError(
                    f"the DICOMweb server at {self.url} has nothing for {what} (HTTP 404); check "
                    "the UIDs and the URL",
                    404,
                ) from None
            raise DicomwebError(
                f"the DICOMweb server at {self.url} failed {what} (HTTP {status})"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise DicomwebError(
                f"cannot reach the DICOMweb server at {self.url} ({_reason(exc)}); check "
                "--dicomweb and that the server is running"
            ) from None
        except requests.exceptions.Timeout:
            raise DicomwebError(
                f"the DICOMweb server at {self.url} did not answer {what} in time"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise DicomwebError(f"{what} on {self.url} failed: {_reason(exc)}") from None
        except (ValueError, KeyError) as exc:  # an answer that is not DICOMweb
            raise DicomwebError(
                f"the answer of {self.url} to {what} is not DICOMweb ({exc}); is --dicomweb "
                "the service's root (such as http://host:8042/dicom-web)?"
            ) from None


def _series(item: dict[str, Any]) -> PetSeries:
    def text(tag: str) -> str:
        values = item.get(tag, {}).get("Value") or [""]
        value = values[0]
        if isinstance(value, dict):  # a person name
            value = value.get("Alphabetic", "")
        return str(value)

    count = text("00201209")
    return PetSeries(
        study_uid=text("0020000D"),
        series_uid=text("0020000E"),
        patient_id=text("00100020"),
        patient_name=text("00100010"),
        study_date=text("00080020"),
        description=text("0008103E"),
        instances=int(count) if count.isdigit() else None,
    )


def _modality(item: dict[str, Any]) -> str:
    return str((item.get("00080060", {}).get("Value") or [""])[0]).upper()


def _pet_hint(pet: list[PetSeries]) -> str:
    if not pet:
        return "the study holds no PET series"
    return "its PET series: " + "; ".join(f"{s.series_uid} ({s.label})" for s in pet)


def _safe_uid(uid: object) -> str:
    text = "".join(c for c in str(uid) if c.isdigit() or c == ".").strip(".")
    if not text:
        raise DicomwebError("the DICOMweb server sent an instance without a SOPInstanceUID")
    return text


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, such as 'Connection refused'."""
    text = str(exc)
    for marker in ("] ", ": "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip(" ')\"(") or type(exc).__name__
