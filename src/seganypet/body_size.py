"""Body-size formulas of SUV normalisation and of SUL: lean body mass, body surface area and ideal
body weight (a leaf module: the DICOM SUV reader and the PERCIST liver reference both use it)."""

from __future__ import annotations

from typing import Literal

from seganypet.errors import InputError

LbmFormula = Literal["janmahasatian", "james"]


def lean_body_mass_kg(
    weight_kg: float, height_cm: float, sex: str, formula: LbmFormula = "janmahasatian"
) -> float:
    """Lean body mass in kg.

    ``janmahasatian`` (Janmahasatian et al., Clin Pharmacokinet 2005; recommended by PERCIST) or
    ``james`` (James 1976; used by 3D Slicer's SUVFactorCalculator and so by its RWVM objects).
    """
    sex = normalise_sex(sex)
    if formula == "janmahasatian":
        bmi = weight_kg / (height_cm / 100.0) ** 2
        if sex == "M":
            return 9270.0 * weight_kg / (6680.0 + 216.0 * bmi)
        return 9270.0 * weight_kg / (8780.0 + 244.0 * bmi)
    if formula == "james":
        if sex == "M":
            return 1.10 * weight_kg - 128.0 * (weight_kg / height_cm) ** 2
        return 1.07 * weight_kg - 148.0 * (weight_kg / height_cm) ** 2
    raise ValueError(f"unknown lean body mass formula {formula!r}; use 'janmahasatian' or 'james'")


def body_surface_area_m2(weight_kg: float, height_cm: float) -> float:
    """Body surface area in m² (Du Bois and Du Bois, 1916)."""
    return 0.007184 * weight_kg**0.425 * height_cm**0.725


def ideal_body_weight_kg(height_cm: float, sex: str, weight_kg: float | None = None) -> float:
    """Ideal body weight in kg, capped at the actual weight when given.

    Men 48.0 kg + 1.06 kg/cm above 152 cm, women 45.5 kg + 0.91 kg/cm above 152 cm: the formula of
    3D Slicer's SUVFactorCalculator, whose RWVM objects are the reference values.
    """
    sex = normalise_sex(sex)
    ibw = 48.0 + 1.06 * (height_cm - 152.0) if sex == "M" else 45.5 + 0.91 * (height_cm - 152.0)
    return min(ibw, weight_kg) if weight_kg is not None else ibw


def normalise_sex(sex: str, flag: str | None = None) -> str:
    """``M`` or ``F`` from the ways a header or a user writes them; ``flag`` names the option in
    the error."""
    key = str(sex).strip().upper()
    if key in ("M", "MALE"):
        return "M"
    if key in ("F", "FEMALE"):
        return "F"
    where = flag or "sex"
    raise InputError(f"{where} must be M or F, got {sex!r}")
