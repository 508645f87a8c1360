"""SUV factors: the calculate-suv reference cases, the SUV types, and every refusal."""

from __future__ import annotations

import copy
import json
from datetime import datetime, time

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from conftest import shared_path
from seganypet.body_size import body_surface_area_m2, ideal_body_weight_kg, lean_body_mass_kg
from seganypet.errors import InputError
from seganypet.io.suv import SuvOverrides, suv_factor

CALCULATE_SUV_CASES = [
    "PHILIPS_BQML",
    "PHILIPS_CNTS_AND_BQML_SUV",
    "PHILIPS_CNTS_AND_SUV",
    "SIEMENS",
    "GE_MEDICAL_AND_BQML",
    "BQML_AC_DT_lessThan_S_DT_SIEMENS",
    "CPS_AND_BQML_AC_DT_-_S_DT",
    "RADIOPHARM_DATETIME_UNDEFINED",
]

HALF_LIFE = 6586.2
DOSE = 350e6
WEIGHT = 70.0
ONE_HOUR = 3600.0


def _header(**changes) -> dict:
    """A synthetic BQML header: 70 kg man, 1.75 m, 350 MBq injected at 10:00, scanned at 11:00."""
    header = {
        "Units": "BQML",
        "DecayCorrection": "START",
        "CorrectedImage": ["NORM", "ATTN", "SCAT", "DECY"],
        "PatientWeight": WEIGHT,
        "PatientSize": 1.75,
        "PatientSex": "M",
        "SeriesDate": "20240101",
        "SeriesTime": "110000",
        "AcquisitionDate": "20240101",
        "AcquisitionTime": "110000",
        "RadiopharmaceuticalInformationSequence": [
            {
                "RadionuclideTotalDose": DOSE,
                "RadionuclideHalfLife": HALF_LIFE,
                "RadiopharmaceuticalStartTime": "100000",
            }
        ],
    }
    for key, value in changes.items():
        radiopharmaceutical = header["RadiopharmaceuticalInformationSequence"][0]
        target = radiopharmaceutical if key in radiopharmaceutical else header
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return header


def _bw_factor(decay_seconds: float, weight: float = WEIGHT, dose: float = DOSE) -> float:
    return weight * 1000.0 / (dose * 2.0 ** (-decay_seconds / HALF_LIFE))


# ---- the published reference cases ---------------------------------------------------------


@pytest.mark.parametrize("case", CALCULATE_SUV_CASES)
def test_calculate_suv_reference_cases(case: str) -> None:
    folder = shared_path("data", "suv", "calculate_suv_metadata")
    expected = json.loads((folder / "expected_suvbw_factors.json").read_text())["suvbw_factor"][
        case
    ]
    instances = json.loads((folder / f"{case}-instances.json").read_text())
    result = suv_factor(instances)
    assert result.factor == pytest.approx(expected, rel=1e-6)
    assert result.units == "SUVbw"


def test_philips_string_factors_are_taken_to_their_published_digits() -> None:
    folder = shared_path("data", "suv", "calculate_suv_metadata")
    for case, digits in (
        ("PHILIPS_CNTS_AND_BQML_SUV", "0.000551"),
        ("PHILIPS_CNTS_AND_SUV", "0.000728"),
    ):
        result = suv_factor(json.loads((folder / f"{case}-instances.json").read_text()))
        assert f"{result.factor:.6f}" == digits
        assert result.units_in == "CNTS"
        assert "SUVScaleFactor" in result.tags_used


# ---- decay and times ----------------------------------------------------------------------


def test_bqml_start_decays_the_dose_from_injection_to_series_time() -> None:
    result = suv_factor(_header())
    assert result.decay_seconds == pytest.approx(ONE_HOUR)
    assert result.factor == pytest.approx(_bw_factor(ONE_HOUR), rel=1e-12)
    assert result.tags_used["PatientWeight"] == WEIGHT
    assert result.tags_used["RadiopharmaceuticalStartTime"] == "10:00:00"
    assert result.supplied == {}


def test_flattened_and_nested_radiopharmaceutical_fields_agree() -> None:
    nested = _header()
    flat = copy.deepcopy(nested)
    flat.update(flat.pop("RadiopharmaceuticalInformationSequence")[0])
    assert suv_factor(flat).factor == suv_factor(nested).factor


def test_decay_correction_admin_needs_no_injection_time() -> None:
    header = _header(DecayCorrection="ADMIN", RadiopharmaceuticalStartTime=None)
    result = suv_factor(header)
    assert result.decay_seconds == 0.0
    assert result.factor == pytest.approx(WEIGHT * 1000.0 / DOSE, rel=1e-12)


def test_injection_before_midnight_scan_after() -> None:
    header = _header(
        SeriesDate="20240102",
        SeriesTime="003000",
        AcquisitionDate="20240102",
        AcquisitionTime="003000",
    )
    header["RadiopharmaceuticalInformationSequence"][0]["RadiopharmaceuticalStartTime"] = "233000"
    result = suv_factor(header)
    assert result.decay_seconds == pytest.approx(ONE_HOUR)
    with_datetime = copy.deepcopy(header)
    with_datetime["RadiopharmaceuticalInformationSequence"][0][
        "RadiopharmaceuticalStartDateTime"
    ] = "20240101233000.00 "
    assert suv_factor(with_datetime).decay_seconds == pytest.approx(ONE_HOUR)


def test_start_datetime_wins_over_start_time() -> None:
    header = _header()
    header["RadiopharmaceuticalInformationSequence"][0]["RadiopharmaceuticalStartDateTime"] = (
        "20240101093000"
    )
    result = suv_factor(header)
    assert result.decay_seconds == pytest.approx(1.5 * ONE_HOUR)
    assert "RadiopharmaceuticalStartDateTime" in result.tags_used


def test_acquisition_before_series_time_is_the_decay_reference() -> None:
    header = _header(SeriesTime="120000", AcquisitionTime="110000")
    assert suv_factor(header).decay_seconds == pytest.approx(ONE_HOUR)


def test_ge_private_scan_time_is_used_when_series_time_was_reset() -> None:
    header = _header(SeriesTime="120000", AcquisitionTime="103000")
    header["GEPrivatePostInjectionDateTime"] = "20240101104500.00"
    result = suv_factor(header)
    assert result.decay_seconds == pytest.approx(0.75 * ONE_HOUR)
    assert result.tags_used["GEPrivateScanDateTime"] == "2024-01-01T10:45:00"


def test_earliest_acquisition_of_the_series_counts() -> None:
    late, early = (
        _header(SeriesTime="120000", AcquisitionTime="113000"),
        _header(SeriesTime="120000"),
    )
    assert suv_factor([late, early]).decay_seconds == pytest.approx(ONE_HOUR)


def test_series_time_is_used_when_acquisitions_start_later() -> None:
    header = _header(AcquisitionTime="113000")
    assert suv_factor(header).decay_seconds == pytest.approx(ONE_HOUR)


# ---- units ----------------------------------------------------------------------------------


def test_gml_is_already_suv() -> None:
    result = suv_factor(_header(Units="GML", DecayCorrection="ADMIN"))
    assert result.factor == 1.0
    assert result.units_in == "GML"


def test_philips_activity_concentration_scale_factor_scales_the_bqml_factor() -> None:
    header = _header(Units="CNTS")
    header["PhilipsPETPrivateGroup"] = {"ActivityConcentrationScaleFactor": "4.5 "}
    assert suv_factor(header).factor == pytest.approx(4.5 * _bw_factor(ONE_HOUR), rel=1e-12)


def test_philips_suv_scale_factor_converts_to_other_suv_types() -> None:
    header = _header(Units="CNTS")
    header["PhilipsPETPrivateGroup"] = {"SUVScaleFactor": "0.0005"}
    lbm = suv_factor(header, "lbm").factor
    assert lbm == pytest.approx(0.0005 * lean_body_mass_kg(WEIGHT, 175.0, "M") / WEIGHT, rel=1e-12)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"Units": "PROPCNTS"}, "PROPCNTS"),
        ({"Units": "CNTS"}, "CNTS"),
        ({"Units": None}, "Units (0054,1001) is missing"),
        ({"CorrectedImage": ["NORM", "DECY"]}, "lacks ATTN"),
        ({"CorrectedImage": ["NORM", "ATTN"]}, "lacks DECY"),
        ({"CorrectedImage": None}, "CorrectedImage (0028,0051) is missing"),
        ({"DecayCorrection": "NONE"}, "DecayCorrection NONE"),
    ],
)
def test_not_quantitative_images_are_refused(changes: dict, expected: str) -> None:
    with pytest.raises(InputError) as error:
        suv_factor(_header(**changes))
    assert expected in str(error.value)


def test_counts_without_philips_factor_say_not_quantitative() -> None:
    with pytest.raises(InputError, match="not quantitative"):
        suv_factor(_header(Units="PROPCNTS"))
    with pytest.raises(InputError, match=r"7053,1000.*not quantitative"):
        suv_factor(_header(Units="CNTS"))


# ---- missing fields and overrides ---------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "tag", "flag"),
    [
        ("PatientWeight", "(0010,1030)", "--weight-kg"),
        ("RadionuclideTotalDose", "(0018,1074)", "--dose-mbq"),
        ("RadiopharmaceuticalStartTime", "(0018,1072)", "--injection-time"),
    ],
)
def test_missing_field_names_the_tag_and_the_flag(missing: str, tag: str, flag: str) -> None:
    with pytest.raises(InputError) as error:
        suv_factor(_header(**{missing: None}))
    message = str(error.value)
    assert missing in message and tag in message and flag in message


def test_zero_weight_counts_as_missing() -> None:
    with pytest.raises(InputError, match="--weight-kg"):
        suv_factor(_header(PatientWeight=0))


def test_overrides_supply_missing_fields() -> None:
    header = _header(
        PatientWeight=None, RadionuclideTotalDose=None, RadiopharmaceuticalStartTime=None
    )
    result = suv_factor(
        header, overrides=SuvOverrides(weight_kg=WEIGHT, dose_mbq=350, injection_time="10:00")
    )
    assert result.factor == pytest.approx(_bw_factor(ONE_HOUR), rel=1e-12)
    assert result.supplied["PatientWeight"] == WEIGHT
    assert result.supplied["RadionuclideTotalDose"] == pytest.approx(DOSE)
    assert result.supplied["RadiopharmaceuticalStartDateTime"] == "2024-01-01T10:00:00"


def test_an_override_replaces_the_header_value() -> None:
    result = suv_factor(_header(), overrides=SuvOverrides(weight_kg=2 * WEIGHT))
    assert result.factor == pytest.approx(2 * _bw_factor(ONE_HOUR), rel=1e-12)
    assert result.supplied == {"PatientWeight": 2 * WEIGHT}


@pytest.mark.parametrize(
    "given",
    [
        "100000",
        "10:00",
        "10:00:00",
        "20240101100000",
        "2024-01-01T10:00:00",
        time(10),
        datetime(2024, 1, 1, 10),
    ],
)
def test_injection_time_formats(given) -> None:
    header = _header(RadiopharmaceuticalStartTime=None)
    result = suv_factor(header, overrides=SuvOverrides(injection_time=given))
    assert result.decay_seconds == pytest.approx(ONE_HOUR)


def test_bad_injection_time_is_refused() -> None:
    with pytest.raises(InputError, match="--injection-time"):
        suv_factor(_header(), overrides=SuvOverrides(injection_time="ten o'clock"))


def test_injection_after_scan_is_refused() -> None:
    with pytest.raises(InputError, match="after the scan"):
        suv_factor(_header(RadiopharmaceuticalStartTime="113000"))


@pytest.mark.parametrize(
    ("missing", "flag"), [("PatientSize", "--height-cm"), ("PatientSex", "--sex")]
)
def test_lean_body_mass_needs_height_and_sex(missing: str, flag: str) -> None:
    with pytest.raises(InputError) as error:
        suv_factor(_header(**{missing: None}), "lbm")
    assert missing in str(error.value) and flag in str(error.value)
    overrides = SuvOverrides(height_cm=175.0) if missing == "PatientSize" else SuvOverrides(sex="M")
    assert (
        suv_factor(_header(**{missing: None}), "lbm", overrides).factor
        == suv_factor(_header(), "lbm").factor
    )


def test_height_in_centimetres_in_the_header_is_refused() -> None:
    with pytest.raises(InputError, match="--height-cm"):
        suv_factor(_header(PatientSize=175), "bsa")


def test_instances_of_different_series_are_refused() -> None:
    with pytest.raises(InputError, match="disagree on PatientWeight"):
        suv_factor([_header(), _header(PatientWeight=80)])


def test_unknown_suv_type_is_refused() -> None:
    with pytest.raises(InputError, match="unknown SUV type"):
        suv_factor(_header(), "mass")


# ---- SUV types ------------------------------------------------------------------------------


def test_suv_types_scale_the_body_weight_factor() -> None:
    bw = _bw_factor(ONE_HOUR)
    lbm_janmahasatian = 9270 * WEIGHT / (6680 + 216 * WEIGHT / 1.75**2)
    lbm_james = 1.10 * WEIGHT - 128 * (WEIGHT / 175) ** 2
    assert suv_factor(_header(), "SUVbw").factor == pytest.approx(bw, rel=1e-12)
    assert suv_factor(_header(), "lbm").factor == pytest.approx(
        bw * lbm_janmahasatian / WEIGHT, rel=1e-12
    )
    assert suv_factor(_header(), "lbm", lbm_formula="james").factor == pytest.approx(
        bw * lbm_james / WEIGHT, rel=1e-12
    )
    bsa = 0.007184 * WEIGHT**0.425 * 175**0.725
    assert suv_factor(_header(), "bsa").factor == pytest.approx(bw * bsa / WEIGHT, rel=1e-12)
    # 48 + 1.06 * 23 cm = 72.4 kg is above the 70 kg weight, so the weight caps it.
    assert suv_factor(_header(), "ibw").factor == pytest.approx(bw, rel=1e-12)
    short_woman = _header(PatientSex="F", PatientSize=1.60)
    expected_ibw = 45.5 + 0.91 * 8
    assert suv_factor(short_woman, "ibw").factor == pytest.approx(
        bw * expected_ibw / WEIGHT, rel=1e-12
    )
    assert suv_factor(short_woman, "ibw").units == "SUVibw"


def test_body_size_formulas() -> None:
    assert lean_body_mass_kg(60, 165, "F") == pytest.approx(9270 * 60 / (8780 + 244 * 60 / 1.65**2))
    assert lean_body_mass_kg(60, 165, "F", "james") == pytest.approx(
        1.07 * 60 - 148 * (60 / 165) ** 2
    )
    # Du Bois' tabulated value for 70 kg and 175 cm
    assert body_surface_area_m2(70, 175) == pytest.approx(1.85, abs=5e-3)
    assert ideal_body_weight_kg(165, "F") == pytest.approx(45.5 + 0.91 * 13)
    assert ideal_body_weight_kg(190, "M", weight_kg=60) == 60  # capped at the actual weight


# ---- pydicom Datasets -----------------------------------------------------------------------


def _dataset(header: dict) -> Dataset:
    ds = Dataset()
    for key, value in header.items():
        if key == "RadiopharmaceuticalInformationSequence":
            item = Dataset()
            for sub_key, sub_value in value[0].items():
                setattr(item, sub_key, sub_value)
            ds.RadiopharmaceuticalInformationSequence = Sequence([item])
        else:
            setattr(ds, key, value)
    return ds


def test_datasets_give_the_same_factor_as_dicts() -> None:
    assert suv_factor(_dataset(_header())).factor == pytest.approx(
        suv_factor(_header()).factor, rel=1e-12
    )


def test_dataset_private_philips_and_ge_tags() -> None:
    philips = _dataset(_header(Units="CNTS"))
    philips.private_block(0x7053, "Philips PET Private Group", create=True).add_new(
        0x00, "DS", "0.000551"
    )
    assert suv_factor(philips).factor == pytest.approx(0.000551)

    ge = _dataset(_header(SeriesTime="120000", AcquisitionTime="103000"))
    ge.private_block(0x0009, "GEMS_PETD_01", create=True).add_new(0x0D, "DT", "20240101104500")
    assert suv_factor(ge).decay_seconds == pytest.approx(0.75 * ONE_HOUR)


def test_real_dataset_header() -> None:
    import pydicom

    folder = shared_path("data", "suv", "delia_nsclc_r01_005", "PET_BODY_CTAC")
    header = pydicom.dcmread(folder / "1-001.dcm", stop_before_pixels=True)
    assert suv_factor(header).factor == pytest.approx(1.77393e-4, rel=1e-3)
