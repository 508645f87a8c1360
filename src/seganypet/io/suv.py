"""SUV conversion factors from PET DICOM headers.

The factor turns a stored value after rescale (RescaleSlope/Intercept) into SUV:
``SUV = (stored * slope + intercept) * factor``. The rules follow the QIBA vendor-neutral
pseudo-code for SUV, with the refinements of the cornerstonejs calculate-suv library that serves
as the reference implementation (its published test cases are our acceptance tests):

* Units BQML, DecayCorrection START: the injected dose is decayed from the injection time to the
  scan reference time. That is the series time, unless an acquisition started earlier than the
  series time (the series time was then reset by post-processing); then the GE private scan
  date-time (0009,100D) when present, else the earliest acquisition date-time.
* DecayCorrection ADMIN: the image is already decay-corrected to the administration time.
* Units GML: the values are already SUVbw (factor 1).
* Units CNTS (Philips): the private SUV scale factor (7053,1000), or else the private activity
  concentration scale factor (7053,1009) that turns counts into Bq/ml.
* Anything else (PROPCNTS, CNTS without the Philips factors, no attenuation correction) is not
  quantitative and is refused.

The headers may be pydicom Datasets or plain dicts mapping DICOM keywords to values, with the
RadiopharmaceuticalInformationSequence nested or flattened into the top level, and the Philips
private factors under ``PhilipsPETPrivateGroup``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from seganypet.body_size import (
    LbmFormula,
    body_surface_area_m2,
    ideal_body_weight_kg,
    lean_body_mass_kg,
    normalise_sex,
)
from seganypet.errors import InputError, plain

SuvType = Literal["bw", "lbm", "bsa", "ibw"]

SUV_UNITS: dict[str, str] = {"bw": "SUVbw", "lbm": "SUVlbm", "bsa": "SUVbsa", "ibw": "SUVibw"}

# DICOM tags named in messages, so that a user can find them in a header dump.
TAG_NUMBERS: dict[str, str] = {
    "PatientWeight": "(0010,1030)",
    "PatientSize": "(0010,1020)",
    "PatientSex": "(0010,0040)",
    "RadionuclideTotalDose": "(0018,1074)",
    "RadionuclideHalfLife": "(0018,1075)",
    "RadiopharmaceuticalStartTime": "(0018,1072)",
    "RadiopharmaceuticalStartDateTime": "(0018,1078)",
    "SeriesDate": "(0008,0021)",
    "SeriesTime": "(0008,0031)",
    "AcquisitionDate": "(0008,0022)",
    "AcquisitionTime": "(0008,0032)",
    "Units": "(0054,1001)",
    "DecayCorrection": "(0054,1102)",
    "CorrectedImage": "(0028,0051)",
    "SUVScaleFactor": "(7053,1000)",
    "ActivityConcentrationScaleFactor": "(7053,1009)",
    "GEPrivateScanDateTime": "(0009,100D)",
}

# The command-line flag that supplies each overridable value.
OVERRIDE_FLAGS: dict[str, str] = {
    "PatientWeight": "--weight-kg",
    "RadionuclideTotalDose": "--dose-mbq",
    "RadiopharmaceuticalStartDateTime": "--injection-time",
    "PatientSize": "--height-cm",
    "PatientSex": "--sex",
}

PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"
GE_PRIVATE_CREATOR = "GEMS_PETD_01"
RADIOPHARMACEUTICAL_SEQUENCE = "RadiopharmaceuticalInformationSequence"

# An injection time that, on the series date, falls more than this after the scan is taken to
# belong to the day before (injection before midnight, scan after).
MIDNIGHT_ROLLOVER = timedelta(hours=12)


@dataclass(frozen=True)
class SuvOverrides:
    """Values given by the user that replace (or stand in for missing) header fields."""

    weight_kg: float | None = None
    dose_mbq: float | None = None
    injection_time: str | datetime | time | None = None
    height_cm: float | None = None
    sex: str | None = None


@dataclass(frozen=True)
class SuvResult:
    """An SUV factor and where it came from.

    ``factor`` multiplies the stored value after rescale. ``units_in`` is the DICOM Units of the
    source. ``tags_used`` maps each header keyword that entered the computation to the value used;
    ``supplied`` holds those that came from the user's overrides instead of the header.
    ``method`` says in words which rule applied.
    """

    factor: float
    suv_type: str
    units_in: str
    method: str
    tags_used: dict[str, Any] = field(default_factory=dict)
    supplied: dict[str, Any] = field(default_factory=dict)
    decay_seconds: float | None = None

    @property
    def units(self) -> str:
        """The units of ``value * factor``: SUVbw, SUVlbm, SUVbsa or SUVibw."""
        return SUV_UNITS[self.suv_type]


# --------------------------------------------------------------------------------------------
# The SUV factor
# --------------------------------------------------------------------------------------------


def suv_factor(
    headers: Any,
    suv_type: str = "bw",
    overrides: SuvOverrides | None = None,
    lbm_formula: LbmFormula = "janmahasatian",
) -> SuvResult:
    """The factor that turns the stored values (after rescale) of one PET series into SUV.

    ``headers``: one header or the headers of all instances of the series (pydicom Datasets or
    keyword dicts). Series-level fields must agree between instances; acquisition times may
    differ (the earliest one is used, as QIBA prescribes). ``suv_type``: bw, lbm, bsa or ibw
    (``SUVbw`` etc. are accepted too). The SUVbsa factor follows the convention of the RWVM objects
    written by 3D Slicer: BSA in m² × activity in kBq/ml / dose in MBq.

    Raises :class:`InputError` when a needed field is missing (naming the tag and the override
    flag) or when the image is not quantitative.
    """
    instances = _as_header_list(headers)
    suv_type = normalise_suv_type(suv_type)
    overrides = overrides or SuvOverrides()
    calc = _SeriesSuv(instances, overrides)
    return calc.compute(suv_type, lbm_formula)


def normalise_suv_type(suv_type: str) -> str:
    """'bw', 'SUVbw', 'BW' -> 'bw'; anything else is an InputError."""
    key = str(suv_type).strip().lower()
    key = key[3:] if key.startswith("suv") else key
    if key not in SUV_UNITS:
        raise InputError(
            f"unknown SUV type {suv_type!r}; choose one of {', '.join(SUV_UNITS)} "
            "(body weight, lean body mass, body surface area, ideal body weight)"
        )
    return key


class _SeriesSuv:
    """One SUV computation: reads header fields, records what it used, applies overrides."""

    def __init__(self, instances: list[Any], overrides: SuvOverrides) -> None:
        self.instances = instances
        self.first = instances[0]
        self.overrides = overrides
        self.tags_used: dict[str, Any] = {}
        self.supplied: dict[str, Any] = {}

    # ---- the computation --------------------------------------------------------------------

    def compute(self, suv_type: str, lbm_formula: LbmFormula) -> SuvResult:
        self._check_one_series()
        units = self._units()
        self._check_corrections(units)
        decay_seconds: float | None = None
        if units == "BQML":
            bw_factor, decay_seconds = self._bqml_factor()
            method = "activity concentration (BQML) x weight / decay-corrected dose"
        elif units == "GML":
            bw_factor = 1.0
            method = "values already SUVbw (Units GML)"
        else:  # CNTS, checked by _units
            bw_factor, decay_seconds, method = self._philips_counts_factor()
        factor = bw_factor * self._body_size_ratio(suv_type, lbm_formula)
        if not (math.isfinite(factor) and factor > 0):
            used = ", ".join(f"{key} {plain(value)}" for key, value in self.tags_used.items())
            raise InputError(
                f"the SUV factor came out as {plain(factor)}; check the header values used: {used}"
            )
        return SuvResult(
            factor=factor,
            suv_type=suv_type,
            units_in=units,
            method=method,
            tags_used=dict(self.tags_used),
            supplied=dict(self.supplied),
            decay_seconds=decay_seconds,
        )

    def _units(self) -> str:
        units = self._required_code(
            "Units",
            "Units (0054,1001) is missing, so the pixel values have no known physical unit; "
            "SUV cannot be computed. Export the PET series with its full header",
        )
        if units in ("BQML", "GML"):
            return units
        if units == "CNTS" and (
            self._philips_value("SUVScaleFactor")
            or self._philips_value("ActivityConcentrationScaleFactor")
        ):
            return units
        if units == "CNTS":
            reason = "counts without the Philips private SUV scale factor (7053,1000) or activity concentration scale factor (7053,1009)"
        elif units == "PROPCNTS":
            reason = "proportional to counts: not calibrated to activity concentration"
        else:
            reason = "not an activity concentration this program can convert"
        raise InputError(
            f"Units {_shown(units)} ({reason}): the image is not quantitative, so SUV cannot be computed. "
            "Use the attenuation-corrected, calibrated PET series (Units BQML)"
        )

    def _check_corrections(self, units: str) -> None:
        corrected = self._header_list("CorrectedImage")
        if corrected is None:
            raise InputError(
                "CorrectedImage (0028,0051) is missing, so it is unknown whether the image is "
                "attenuation- and decay-corrected; SUV cannot be computed from it"
            )
        corrected = [c.upper() for c in corrected]
        self.tags_used["CorrectedImage"] = corrected
        if "ATTN" not in corrected:
            raise InputError(
                f"CorrectedImage {corrected} lacks ATTN: the image is not attenuation-corrected and "
                "not quantitative, so SUV cannot be computed. Use the attenuation-corrected series"
            )
        if "DECY" not in corrected:
            raise InputError(
                f"CorrectedImage {corrected} lacks DECY: the image is not decay-corrected, so SUV "
                "cannot be computed. Use a decay-corrected series"
            )

    def _bqml_factor(self) -> tuple[float, float]:
        """SUVbw factor for activity concentration in Bq/ml, and the decay time in seconds."""
        weight_kg = self._weight_kg()
        dose_bq = self._dose_bq()
        decay_correction = self._required_code(
            "DecayCorrection",
            "DecayCorrection (0054,1102) is missing, so the reference time of the activity is "
            "unknown; SUV cannot be computed",
        )
        if decay_correction == "ADMIN":
            decay_seconds = 0.0
            decayed_dose = dose_bq
        elif decay_correction == "START":
            scan = self._scan_datetime()
            injection = self._injection_datetime(scan)
            decay_seconds = (scan - injection).total_seconds()
            if decay_seconds < 0:
                raise InputError(
                    f"the injection time {injection.isoformat()} is after the scan reference time "
                    f"{scan.isoformat()}; the header times are inconsistent. Check "
                    "RadiopharmaceuticalStartTime (0018,1072) or give the injection date and time "
                    "with --injection-time YYYYMMDDHHMMSS"
                )
            half_life = self._half_life_s()
            decayed_dose = dose_bq * 2.0 ** (-decay_seconds / half_life)
            if not decayed_dose > 0:
                raise InputError(
                    f"the injected dose decays to nothing in the {plain(decay_seconds)} s from "
                    f"injection ({injection.isoformat()}) to the scan ({scan.isoformat()}) with "
                    f"RadionuclideHalfLife (0018,1075) {plain(half_life)} s; check the half-life "
                    "and the injection date and time, or give them with --injection-time"
                )
        else:
            raise InputError(
                f"DecayCorrection {_shown(decay_correction)}: the image is not decay-corrected to the "
                "acquisition start or to the administration time (START or ADMIN), so SUV cannot "
                "be computed"
            )
        return weight_kg * 1000.0 / decayed_dose, decay_seconds

    def _philips_counts_factor(self) -> tuple[float, float | None, str]:
        if self._philips_value("SUVScaleFactor"):
            suv_scale = self._philips_series_value("SUVScaleFactor")
            return suv_scale, None, "Philips private SUV scale factor (7053,1000)"
        activity_scale = self._philips_series_value("ActivityConcentrationScaleFactor")
        bqml_factor, decay_seconds = self._bqml_factor()
        method = (
            "Philips private activity concentration scale factor (7053,1009) x weight / "
            "decay-corrected dose"
        )
        return activity_scale * bqml_factor, decay_seconds, method

    def _body_size_ratio(self, suv_type: str, lbm_formula: LbmFormula) -> float:
        """(normalising body size) / (body weight): turns the SUVbw factor into the other types."""
        if suv_type == "bw":
            return 1.0
        weight_kg = self._weight_kg()
        height_cm = self._height_cm(suv_type)
        sex = self._sex(suv_type) if suv_type != "bsa" else ""
        if suv_type == "lbm":
            self.tags_used["LeanBodyMassFormula"] = lbm_formula
        try:
            if suv_type == "bsa":
                # Slicer convention: BSA in m² in place of the weight in kg.
                size, what = body_surface_area_m2(weight_kg, height_cm), "body surface area"
            elif suv_type == "lbm":
                size = lean_body_mass_kg(weight_kg, height_cm, sex, lbm_formula)
                what = f"{lbm_formula} lean body mass"
            else:
                size, what = ideal_body_weight_kg(height_cm, sex, weight_kg), "ideal body weight"
        except (OverflowError, ZeroDivisionError):  # absurd sizes: beyond what a float holds
            size, what = math.inf, f"SUV{suv_type} body size"
        if not (math.isfinite(size) and size > 0):
            raise InputError(
                f"the {what} comes out as {plain(size)} for weight {plain(weight_kg)} kg and "
                f"height {plain(height_cm)} cm; check PatientWeight (0010,1030) and PatientSize "
                "(0010,1020), or give them with --weight-kg and --height-cm"
            )
        return size / weight_kg

    # ---- the individual fields --------------------------------------------------------------

    def _weight_kg(self) -> float:
        if self.overrides.weight_kg is not None:
            return self._supply("PatientWeight", _positive(self.overrides.weight_kg, "--weight-kg"))
        return self._positive_header("PatientWeight", "the patient weight in kg")

    def _dose_bq(self) -> float:
        if self.overrides.dose_mbq is not None:
            dose_mbq = _positive(self.overrides.dose_mbq, "--dose-mbq")
            return self._supply("RadionuclideTotalDose", dose_mbq * 1e6)
        return self._positive_header("RadionuclideTotalDose", "the injected activity in MBq")

    def _half_life_s(self) -> float:
        half_life = self._header_number("RadionuclideHalfLife")
        if half_life is None or half_life <= 0:
            raise InputError(
                "RadionuclideHalfLife (0018,1075) is missing or not positive, so the dose cannot be "
                "decay-corrected; export the PET series with its radiopharmaceutical information"
            )
        self.tags_used["RadionuclideHalfLife"] = half_life
        return half_life

    def _height_cm(self, suv_type: str) -> float:
        if self.overrides.height_cm is not None:
            height_cm = _positive(self.overrides.height_cm, "--height-cm")
            self._supply("PatientSize", height_cm / 100.0)
            return height_cm
        size_m = self._header_number("PatientSize")
        if size_m is None or size_m <= 0:
            raise self._missing("PatientSize", f"the patient height in cm (SUV{suv_type} needs it)")
        if size_m > 3.0:
            raise InputError(
                f"PatientSize (0010,1020) is {size_m}, not a height in metres; give the height "
                "with --height-cm"
            )
        self.tags_used["PatientSize"] = size_m
        return size_m * 100.0

    def _sex(self, suv_type: str) -> str:
        if self.overrides.sex is not None:
            return self._supply("PatientSex", normalise_sex(self.overrides.sex, "--sex"))
        sex = self._header_text("PatientSex")
        if sex is None or sex.upper() not in ("M", "F"):
            raise InputError(
                f"PatientSex (0010,0040) is {sex!r}, not M or F, and SUV{suv_type} depends on it; "
                "give it with --sex M or --sex F"
            )
        self.tags_used["PatientSex"] = sex.upper()
        return sex.upper()

    def _scan_datetime(self) -> datetime:
        """The time the activity is decay-corrected to (QIBA)."""
        series_date = self._header_date("SeriesDate")
        series_time = self._header_time("SeriesTime")
        earliest_acquisition = self._earliest_acquisition(series_date)
        if series_time is None or series_date is None:
            if earliest_acquisition is None:
                missing = "SeriesTime" if series_time is None else "SeriesDate"
                raise InputError(
                    f"{missing} {TAG_NUMBERS[missing]} and the acquisition date and time are "
                    "missing, so the scan time (the decay reference) is unknown; SUV cannot be computed"
                )
            return earliest_acquisition
        self.tags_used["SeriesDate"] = series_date.isoformat()
        self.tags_used["SeriesTime"] = series_time.isoformat()
        series = datetime.combine(series_date, series_time)
        if earliest_acquisition is None or series <= earliest_acquisition:
            return series
        # An acquisition began before the series time: the series time was reset (for example by
        # a re-reconstruction) and is not the decay reference.
        ge_scan = self._ge_scan_datetime()
        if ge_scan is not None:
            return ge_scan
        return earliest_acquisition

    def _earliest_acquisition(self, fallback_date: date | None) -> datetime | None:
        times: list[datetime] = []
        for header in self.instances:
            acq_time = _parse_time(_get(header, "AcquisitionTime"))
            acq_date = _parse_date(_get(header, "AcquisitionDate")) or fallback_date
            if acq_time is not None and acq_date is not None:
                times.append(datetime.combine(acq_date, acq_time))
        if not times:
            return None
        earliest = min(times)
        self.tags_used["AcquisitionDate"] = earliest.date().isoformat()
        self.tags_used["AcquisitionTime"] = earliest.time().isoformat()
        return earliest

    def _ge_scan_datetime(self) -> datetime | None:
        raw = _ge_private_scan_datetime(self.first)
        value = _parse_datetime(raw)
        if value is not None:
            self.tags_used["GEPrivateScanDateTime"] = value.isoformat()
        return value

    def _injection_datetime(self, scan: datetime) -> datetime:
        given = self.overrides.injection_time
        if given is not None:
            injection = _parse_user_injection_time(given, scan)
            self._supply("RadiopharmaceuticalStartDateTime", injection.isoformat())
            return injection
        start_datetime = _parse_datetime(self._header_value("RadiopharmaceuticalStartDateTime"))
        if start_datetime is not None:
            self.tags_used["RadiopharmaceuticalStartDateTime"] = start_datetime.isoformat()
            return start_datetime
        start_time = _parse_time(self._header_value("RadiopharmaceuticalStartTime"))
        if start_time is None:
            raise self._missing(
                "RadiopharmaceuticalStartTime",
                "the injection time as HHMMSS or YYYYMMDDHHMMSS",
            )
        self.tags_used["RadiopharmaceuticalStartTime"] = start_time.isoformat()
        return _on_scan_day(start_time, scan)

    # ---- header access ---------------------------------------------------------------------

    def _check_one_series(self) -> None:
        """Series-level fields must agree between instances, or they are not one series."""
        keys = (
            "Units",
            "DecayCorrection",
            "CorrectedImage",
            "PatientWeight",
            "PatientSize",
            "PatientSex",
            "RadionuclideTotalDose",
            "RadionuclideHalfLife",
            "RadiopharmaceuticalStartTime",
            "RadiopharmaceuticalStartDateTime",
            "SeriesDate",
            "SeriesTime",
        )
        for key in keys:
            values = {repr(_get(h, key)) for h in self.instances}
            if len(values) > 1:
                raise InputError(
                    f"the instances disagree on {key} {TAG_NUMBERS.get(key, '')} "
                    f"({', '.join(sorted(values))}); they do not form one PET series. "
                    "Give a folder that holds one series"
                )

    def _header_value(self, keyword: str) -> Any:
        return _get(self.first, keyword)

    def _positive_header(self, keyword: str, what: str) -> float:
        """A positive number from the header, recorded as used; else the missing-field error."""
        value = self._header_number(keyword)
        if value is None or value <= 0:
            raise self._missing(keyword, what)
        self.tags_used[keyword] = value
        return value

    def _required_code(self, keyword: str, missing: str) -> str:
        """A coded header value in upper case, recorded as used; ``missing`` is the error."""
        value = self._header_text(keyword)
        if value is None:
            raise InputError(missing)
        self.tags_used[keyword] = value.upper()
        return value.upper()

    def _header_text(self, keyword: str) -> str | None:
        value = self._header_value(keyword)
        return None if value is None else str(value).strip() or None

    def _header_list(self, keyword: str) -> list[str] | None:
        value = self._header_value(keyword)
        if value is None:
            return None
        if isinstance(value, str):
            return [v.strip() for v in value.split("\\") if v.strip()]
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return [str(v).strip() for v in value]
        return [str(value).strip()]  # a number or an object where codes belong

    def _header_number(self, keyword: str) -> float | None:
        return _parse_number(self._header_value(keyword))

    def _header_date(self, keyword: str) -> date | None:
        return _parse_date(self._header_value(keyword))

    def _header_time(self, keyword: str) -> time | None:
        return _parse_time(self._header_value(keyword))

    def _philips_value(self, name: str) -> float | None:
        value = _parse_number(_philips_private(self.first, name))
        return value if value else None

    def _philips_series_value(self, name: str) -> float:
        values = [_parse_number(_philips_private(h, name)) for h in self.instances]
        present = [v for v in values if v]
        if not present or len(present) != len(values):
            raise InputError(
                f"the Philips private {name} {TAG_NUMBERS[name]} is missing from some instances; "
                "SUV cannot be computed for Units CNTS without it"
            )
        if max(present) - min(present) > 1e-9 * max(abs(v) for v in present):
            raise InputError(
                f"the Philips private {name} {TAG_NUMBERS[name]} differs between instances "
                f"({min(present)} to {max(present)}); one factor per series is expected"
            )
        self.tags_used[name] = present[0]
        return present[0]

    def _supply(self, keyword: str, value: Any) -> Any:
        self.tags_used[keyword] = value
        self.supplied[keyword] = value
        return value

    def _missing(self, keyword: str, what: str) -> InputError:
        flag = OVERRIDE_FLAGS.get(keyword)
        if keyword == "RadiopharmaceuticalStartTime":
            flag = OVERRIDE_FLAGS["RadiopharmaceuticalStartDateTime"]
        value = self._header_value(keyword)
        state = (
            "is missing or empty in the DICOM header"
            if value is None
            else f"is {_shown(plain(value))} in the DICOM header, which is not usable"
        )
        return InputError(
            f"{keyword} {TAG_NUMBERS[keyword]} {state}, and SUV needs it; give {what} with {flag}"
        )


# --------------------------------------------------------------------------------------------
# Reading fields from Datasets and dicts
# --------------------------------------------------------------------------------------------


def _as_header_list(headers: Any) -> list[Any]:
    if _is_header(headers):
        return [headers]
    if isinstance(headers, Iterable):
        instances = list(headers)
        if instances and all(_is_header(h) for h in instances):
            return instances
    raise InputError("no PET headers were given to compute SUV from")


def _is_header(obj: Any) -> bool:
    return isinstance(obj, Mapping) or (hasattr(obj, "dir") and hasattr(obj, "get"))


def _get(header: Any, keyword: str) -> Any:
    """A header field by keyword, looking into the radiopharmaceutical sequence if needed."""
    value = _clean(header.get(keyword))
    if value is not None:
        return value
    sequence = header.get(RADIOPHARMACEUTICAL_SEQUENCE)
    if isinstance(sequence, Mapping):
        sequence = [sequence]
    if isinstance(sequence, Sequence) and not isinstance(sequence, str) and len(sequence) > 0:
        item = sequence[0]
        if _is_header(item):
            return _clean(item.get(keyword))
    return None


def _clean(value: Any) -> Any:
    """Python values from DICOM element values: empty strings are None, bytes are text."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1").strip("\x00 ")
    if isinstance(value, str):
        value = value.strip("\x00 ")
        return value or None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        items = [_clean(v) for v in value]
        return items or None
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if type(value).__name__ == "PersonName":
        return str(value) or None
    return value


def _philips_private(header: Any, name: str) -> Any:
    offsets = {"SUVScaleFactor": 0x00, "ActivityConcentrationScaleFactor": 0x09}
    if isinstance(header, Mapping):
        group = header.get("PhilipsPETPrivateGroup")
        if isinstance(group, Mapping) and group.get(name) is not None:
            return _clean(group.get(name))
        return _clean(header.get(name))
    return _private_element(header, 0x7053, PHILIPS_PRIVATE_CREATOR, offsets[name])


def _ge_private_scan_datetime(header: Any) -> Any:
    if isinstance(header, Mapping):
        for key in ("GEPrivateScanDateTime", "GEPrivatePostInjectionDateTime"):
            if header.get(key) is not None:
                return _clean(header.get(key))
        return None
    return _private_element(header, 0x0009, GE_PRIVATE_CREATOR, 0x0D)


def _private_element(dataset: Any, group: int, creator: str, offset: int) -> Any:
    try:
        block = dataset.private_block(group, creator)
        return _clean(block[offset].value)
    except (KeyError, ValueError, AttributeError):
        return None


# --------------------------------------------------------------------------------------------
# Parsing DICOM numbers, dates and times
# --------------------------------------------------------------------------------------------


def _shown(text: str) -> str:
    """Header text as a message shows it: as it is, or quoted with escapes when it holds line
    breaks or other unprintable characters."""
    return text if text.isprintable() else repr(text)


def _parse_number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0] if value else None
        if value is None:
            return None
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except (ValueError, OverflowError):  # not a number, or an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _parse_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip().replace("-", "").replace(".", "")
    try:
        return datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


_TIME_RE = re.compile(r"^(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?(?:\.(\d{1,6})\d*)?$")


def _parse_time(value: Any) -> time | None:
    """DICOM TM (HHMMSS.FFFFFF, shorter forms, or the old HH:MM:SS)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.time()
    if isinstance(value, time):
        return value
    match = _TIME_RE.match(str(value).strip())
    if not match:
        return None
    hour, minute, second, fraction = match.groups()
    try:
        return time(
            int(hour),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


def _parse_datetime(value: Any) -> datetime | None:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF, a UTC offset is ignored) or a datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    text = re.split(r"[+&]|-(?=\d{4}$)", str(value).strip())[0]
    if len(text) < 10:  # a date alone carries no time of day
        return None
    day = _parse_date(text[:8])
    clock = _parse_time(text[8:])
    if day is None or clock is None:
        return None
    return datetime.combine(day, clock)


def _parse_user_injection_time(value: str | datetime | time, scan: datetime) -> datetime:
    """--injection-time: a date and time, or a time of day on the scan day."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, time):
        return _on_scan_day(value, scan)
    text = str(value).strip()
    compact = re.sub(r"[-:T ]", "", text)
    full = _parse_datetime(compact) if len(compact) >= 12 and compact[:8].isdigit() else None
    if full is not None:
        return full
    clock = _parse_time(text) or _parse_time(compact)
    if clock is not None and len(compact.split(".")[0]) <= 6:
        return _on_scan_day(clock, scan)
    raise InputError(
        f"--injection-time {text!r} is not a time; give HHMMSS or HH:MM[:SS] (on the scan day), or "
        "YYYYMMDDHHMMSS / YYYY-MM-DDTHH:MM:SS"
    )


def _on_scan_day(clock: time, scan: datetime) -> datetime:
    """A time of day on the scan's date; the day before if that is well after the scan (midnight)."""
    injection = datetime.combine(scan.date(), clock)
    if injection - scan > MIDNIGHT_ROLLOVER:
        injection -= timedelta(days=1)
    return injection


def _positive(value: float, flag: str) -> float:
    number = _parse_number(value)
    if number is None or number <= 0:
        raise InputError(f"{flag} must be a positive number, got {value!r}")
    return number


__all__ = [
    "SUV_UNITS",
    "SuvOverrides",
    "SuvResult",
    "normalise_suv_type",
    "suv_factor",
]
