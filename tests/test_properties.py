"""Property-based tests (hypothesis) of every parser of user input.

The project's rule: a bad input gets one clear line (`InputError`, or argparse's
`ArgumentTypeError` for a command-line value) and never another exception, a traceback or a
silently wrong result. Here hypothesis draws the inputs: point and box strings, prompt files,
damaged NIfTI headers and PET DICOM headers with their SUV tags missing or garbled.

The example counts keep the whole file to about ten seconds on two cores; CI draws the same
examples every run (the ``ci`` profile in conftest.py). To hunt for bugs longer, run
``SEGANYPET_HYPOTHESIS_SCALE=50 python -m pytest tests/test_properties.py
--hypothesis-show-statistics`` (the statistics list every kind of refusal met). Every example that
once failed is pinned below with ``@example``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import io
import json
import logging
import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from unittest import mock

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from bad_inputs import AFFINE, edit_header_fields, nifti_bytes, nifti_header_of
from conftest import shared_path
from seganypet.cli import EXIT_USER_ERROR, build_parser, main
from seganypet.errors import InputError
from seganypet.io import load_image
from seganypet.io.nifti import read_nifti_labels
from seganypet.io.suv import OVERRIDE_FLAGS, TAG_NUMBERS, SuvOverrides, suv_factor
from seganypet.prompts import Box, Lasso, Point, Prompt, Scribble, read_prompt_file
from seganypet.segment import join_coordinate_arguments, parse_box, parse_point
from test_suv import CALCULATE_SUV_CASES


def examples(count: int) -> int:
    """``count`` examples, times SEGANYPET_HYPOTHESIS_SCALE (say 50, to hunt for bugs longer)."""
    return max(1, round(count * float(os.environ.get("SEGANYPET_HYPOTHESIS_SCALE", "1"))))


FINITE = st.floats(allow_nan=False, allow_infinity=False)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def assert_one_line(message: str) -> None:
    """One clear line: not empty, no line break (as ``str.splitlines`` counts them), no traceback,
    no numpy reprs."""
    event("refused: " + re.sub(r"[-+]?\d[\d.e+-]*|'[^']*'|\"[^\"]*\"|/\S+", "_", message)[:70])
    assert message.strip(), "an empty message"
    assert len(message.splitlines()) == 1, message
    assert "Traceback" not in message, message
    assert "np.float" not in message and "np.int" not in message, message


def assert_finite_floats(values, count: int) -> None:
    assert isinstance(values, tuple) and len(values) == count, values
    assert all(type(v) is float and math.isfinite(v) for v in values), values


def assert_valid_prompt(prompt: object) -> None:
    assert isinstance(prompt, Prompt), prompt
    assert type(prompt.positive) is bool
    for vertex in prompt.vertices:
        assert_finite_floats(vertex, 3)
    if isinstance(prompt, Box):
        assert all(h - lo >= 1 for lo, h in zip(prompt.lo, prompt.hi, strict=True))


@contextlib.contextmanager
def quiet():
    """Silence the warnings and nibabel's log lines that damaged inputs provoke on the way to
    their refusal (they are not what these tests judge)."""
    nibabel_log = logging.getLogger("nibabel.global")
    level = nibabel_log.level
    nibabel_log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        nibabel_log.setLevel(level)


# =============================================================================================
# 1. Point and box strings on the command line
# =============================================================================================

#: Pieces that a person types or pastes between the commas, right and wrong.
COORDINATE_PIECES = st.one_of(
    FINITE.map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(
        [
            "neg",
            "pos",
            "NEG",
            "-",
            "+",
            "0",
            "1",
            "",
            " ",
            "nan",
            "-inf",
            "inf",
            "infinity",
            "1e309",
            "-1e999",
            "0x10",
            "1_000",
            "1.5.2",
            "--",
            "١٢",  # Arabic-Indic digits
            "\n",
            "1\n2",
            "[",
            "]",
            "(",
        ]
    ),
    st.text(max_size=4),
)


@st.composite
def coordinate_texts(draw) -> str:
    """Text shaped like coordinates: pieces joined by commas (or not), maybe in brackets."""
    pieces = draw(st.lists(COORDINATE_PIECES, max_size=8))
    separator = draw(st.sampled_from([",", ", ", " ,", ";", " ", ",,"]))
    wrap = draw(st.sampled_from(["{}", "[{}]", "({})", "[{})", " {} ", "{}]", "[[{}]]"]))
    return wrap.format(separator.join(pieces))


POINT_TEXTS = st.one_of(st.text(), coordinate_texts())


@pytest.mark.parametrize(("parse", "kind"), [(parse_point, Point), (parse_box, Box)])
@given(text=POINT_TEXTS)
@example(text="1,2,3,neg")
@example(text="1e309,0,0")
@example(text="nan,1,2")
@example(text="1,2,3,4")
@example(text="1,2,3,4,5,6")
@example(text="1,2,3,4,5,inf")
def test_any_text_is_a_finite_point_or_box_or_one_line(parse, kind, text):
    try:
        prompt = parse(text)
    except argparse.ArgumentTypeError as exc:
        assert_one_line(str(exc))
        return
    assert isinstance(prompt, kind)
    assert_valid_prompt(prompt)


#: Ways of writing a float that give back exactly the same float.
EXACT_FORMATS = st.sampled_from([repr, "{:.17g}".format, lambda v: repr(v).upper()])
SIGNS = st.sampled_from(
    [
        ("", True),
        (",neg", False),
        (", neg", False),
        (",pos", True),
        (",NEG", False),
        (",-", False),
        (",+", True),
        (",0", False),
        (",1", True),
    ]
)
WRAPS = st.sampled_from(["{}", "[{}]", "({})", " {} "])
SEPARATORS = st.sampled_from([",", ", ", " , "])


@given(st.tuples(FINITE, FINITE, FINITE), SIGNS, EXACT_FORMATS, WRAPS, SEPARATORS)
def test_a_well_formed_point_reads_back_exactly(values, sign, form, wrap, separator):
    text = wrap.format(separator.join(form(v) for v in values) + sign[0])
    assert parse_point(text) == Point(values, sign[1])


@given(st.tuples(*[FINITE] * 6), EXACT_FORMATS, WRAPS, SEPARATORS)
def test_a_well_formed_box_reads_back_exactly_or_is_refused_as_flat(values, form, wrap, separator):
    text = wrap.format(separator.join(form(v) for v in values))
    lo = tuple(min(a, b) for a, b in zip(values[:3], values[3:], strict=True))
    hi = tuple(max(a, b) for a, b in zip(values[:3], values[3:], strict=True))
    if all(h - low >= 1 for low, h in zip(lo, hi, strict=True)):  # Python floats: no overflow
        assert parse_box(text) == Box(values[:3], values[3:])
        assert parse_box(text).lo == lo and parse_box(text).hi == hi
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="empty along an axis"):
            parse_box(text)


@cache
def parser() -> argparse.ArgumentParser:
    return build_parser()


def parse_command_line(argv: list[str]) -> tuple[argparse.Namespace | None, int, str]:
    """The parsed arguments (None when refused), the exit status and what went to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parser().parse_args(join_coordinate_arguments(argv)), 0, err.getvalue()
        except SystemExit as exited:
            return None, int(exited.code or 0), err.getvalue()


SEGMENT = ["segment", "-i", "in.nii.gz", "-o", "out.nii.gz"]
ARGUMENTS = st.one_of(
    st.sampled_from(["--point", "--box", "--mm", "--name", "neg", "neg]", "pos)", ",", "-", "--"]),
    COORDINATE_PIECES.map(lambda piece: piece + ","),
    COORDINATE_PIECES,
    st.text(max_size=10),
)


@given(st.lists(ARGUMENTS, max_size=10))
@example(["--point", "-1,", "2,", "3,", "neg"])
@example(["--point", "1,2,3", "x\ny"])
def test_joining_coordinates_never_raises_loses_nothing_and_reparses(argv):
    joined = join_coordinate_arguments(argv)
    assert all(isinstance(a, str) for a in joined)
    assert join_coordinate_arguments(joined) == joined
    if not any(a.startswith(("--point=", "--box=")) for a in argv):
        unjoined = "".join(re.sub(r"^(--point|--box)=", r"\1", a, count=1) for a in joined)
        assert unjoined == "".join(argv)
    args, code, err = parse_command_line([*SEGMENT, *argv])
    assert code in (0, EXIT_USER_ERROR), (code, err)
    assert len(err.splitlines()) <= 1 and "Traceback" not in err, err
    if args is not None:
        for prompt in args.prompts or []:
            assert_valid_prompt(prompt)


@given(
    st.sampled_from(["--point", "--box"]),
    st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=6, max_size=6),
    st.booleans(),
    st.sampled_from(["{}", "[{}]", "({})"]),
    st.booleans(),
)
@example("--point", [-44.5, -44.5, -789.7, 0, 0, 0], True, "[{}]", True)
def test_negative_coordinates_pasted_with_spaces_read_back_exactly(
    option, values, negative, wrap, before_mm
):
    """``--point -44.5, -44.5, -789.7``, as a shell splits text copied from quantify's output."""
    count = 3 if option == "--point" else 6
    values = [-abs(v) if i % 2 == 0 else v for i, v in enumerate(values[:count])]
    if count == 6:  # a box at least one voxel deep along every axis
        values[3:] = [a - 2 - abs(b) for a, b in zip(values[:3], values[3:], strict=True)]
    negative = negative and option == "--point"
    text = wrap.format(", ".join(repr(v) for v in values) + (", neg" if negative else ""))
    extra = ["--mm"] if before_mm else []
    args, code, err = parse_command_line([*SEGMENT, *extra, option, *text.split(" "), "--mm"])
    assert code == 0, err
    values = tuple(values)
    expected = Point(values, not negative) if count == 3 else Box(values[:3], values[3:])
    assert args.prompts == [expected] and args.mm


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "pet.nii.gz"
    path.write_bytes(nifti_bytes(gz=True))
    return path


@settings(max_examples=examples(3), suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(coordinate_texts(), st.text(max_size=20)))
@example("10, 9, 8")
@example("-1,-2,-3")
@example("10,9,8,maybe")
@example("1e999,0,0")
def test_segment_end_to_end_is_a_mask_or_one_line(tiny_image, text):
    """Through ``seganypet segment`` with the bundled model on a 20×18×16 image."""
    output = tiny_image.with_name("mask.nii.gz")
    output.unlink(missing_ok=True)
    argv = ["segment", "-i", str(tiny_image), "-o", str(output), "--point", text]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exited:
            code = int(exited.code or 0)
    err = err.getvalue()
    assert code in (0, EXIT_USER_ERROR), (code, err)
    assert len(err.splitlines()) <= 1 and "Traceback" not in err, err
    if code == EXIT_USER_ERROR:
        assert err.strip(), "refused without saying why"
        assert not output.exists()
    else:
        assert output.is_file() and "wrote" in out.getvalue()


# =============================================================================================
# 2. Prompt files
# =============================================================================================

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
#: A coordinate as it may be written: a number, or something that is not quite one.
COORDINATES = st.one_of(
    FINITE,
    st.integers(),
    NON_FINITE,
    st.booleans(),
    st.none(),
    FINITE.map(repr),
    st.lists(FINITE, max_size=2),
)


def coordinate_lists(count: int):
    return st.one_of(
        st.lists(FINITE | st.integers(-(2**53), 2**53), min_size=count, max_size=count),
        st.lists(COORDINATES, min_size=count - 1, max_size=count + 1),
        JSON_VALUES,
    )


POSITIVE_VALUES = st.one_of(
    st.booleans(),
    st.sampled_from(["true", "false", "True", "neg", ""]),
    st.integers(-1, 2),
    st.none(),
    st.floats(),
    st.lists(st.booleans(), max_size=2),
)
NEAR_MISS_PROMPTS = st.one_of(
    st.fixed_dictionaries(
        {"point": coordinate_lists(3)},
        optional={
            "positive": POSITIVE_VALUES,
            "box": coordinate_lists(6),
            "postive": POSITIVE_VALUES,
            "name": JSON_VALUES,
        },
    ),
    st.fixed_dictionaries(
        {"scribble": st.lists(coordinate_lists(3), max_size=4) | JSON_VALUES},
        optional={"positive": POSITIVE_VALUES, "point": coordinate_lists(3)},
    ),
    st.fixed_dictionaries(
        {"box": coordinate_lists(6)},
        optional={
            "positive": POSITIVE_VALUES,
            "corners": JSON_VALUES,
            "point": coordinate_lists(3),
        },
    ),
    JSON_VALUES,
)


@given(NEAR_MISS_PROMPTS)
@example({"point": [2**53 + 1, 0, 0]})
@example({"point": [10**400, 0, 0]})
@example({"box": [0, 0, 0, 1, 1, -(10**309)]})
@example({"point": [1, 2, 3], "positive": 1})
@example({"point": [1, 2, 3], "positive": "\u2028"})
def test_a_prompt_dict_reads_exactly_or_is_refused_in_one_line(data):
    where = "prompts.json: objects[0].prompts[1]"
    try:
        prompt = Prompt.from_dict(data, where)
    except InputError as exc:
        assert_one_line(str(exc))
        assert str(exc).startswith(where), exc
        return
    assert_valid_prompt(prompt)
    # Accepted: then it was a correct prompt, and it reads as exactly its values.
    if "box" in data:  # a box keeps its lowest and highest corner, whichever order they came in
        corners = np.asarray(data["box"], float).reshape(2, 3)
        expected = {"box": [*corners.min(0).tolist(), *corners.max(0).tolist()]}
    else:
        expected = {"positive": True, **data}
    assert prompt.to_dict() == expected


MODEST = st.floats(-1e6, 1e6, allow_nan=False)
ON_A_SLICE = st.builds(
    lambda axis, depth, plane: tuple(tuple(v[:axis] + (depth,) + v[axis:]) for v in plane),
    st.integers(0, 2),
    MODEST,
    st.lists(st.tuples(MODEST, MODEST), min_size=3, max_size=6),
)
CORRECT_PROMPTS = st.one_of(
    st.builds(Point, st.tuples(FINITE, FINITE, FINITE), st.booleans()),
    st.builds(
        lambda corner, extent, flip: Box(
            corner, tuple(c + e * (-1 if flip else 1) for c, e in zip(corner, extent, strict=True))
        ),
        st.tuples(MODEST, MODEST, MODEST),
        st.tuples(*[st.floats(1.5, 1e6)] * 3),
        st.booleans(),
    ),
    st.builds(Scribble, ON_A_SLICE, st.booleans()),
    st.builds(Lasso, ON_A_SLICE, st.booleans()),
)


@given(CORRECT_PROMPTS, st.booleans())
def test_a_correct_prompt_round_trips(prompt, through_json):
    data = prompt.to_dict()
    if through_json:
        data = json.loads(json.dumps(data))
    assert Prompt.from_dict(data) == prompt


PROMPT_FILES = st.one_of(
    st.fixed_dictionaries(
        {
            "objects": st.lists(
                st.fixed_dictionaries(
                    {
                        "prompts": st.lists(
                            NEAR_MISS_PROMPTS | CORRECT_PROMPTS.map(lambda p: p.to_dict()),
                            max_size=3,
                        )
                    },
                    optional={"name": st.text(max_size=6) | JSON_VALUES},
                )
                | JSON_VALUES,
                max_size=3,
            )
        },
        optional={"coordinates": st.sampled_from(["voxel", "mm", "MM", ""]) | JSON_VALUES},
    ),
    st.lists(NEAR_MISS_PROMPTS, max_size=3),
    JSON_VALUES,
)


@pytest.fixture(scope="module")
def prompt_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prompts")


def read_prompts_or_refusal(path: Path) -> tuple[list[dict], bool] | None:
    try:
        objects, mm = read_prompt_file(path)
    except InputError as exc:
        assert_one_line(str(exc))
        assert str(exc).startswith(str(path)), exc
        return None
    assert type(mm) is bool
    assert isinstance(objects, list) and objects
    for obj in objects:
        assert isinstance(obj["name"], str) and obj["name"].strip()
        assert obj["prompts"]
        for prompt in obj["prompts"]:
            assert_valid_prompt(prompt)
    return objects, mm


@given(PROMPT_FILES)
@example(["\r"])  # a string with a line break, shown in the message
def test_any_json_prompt_file_reads_or_is_refused_in_one_line(prompt_folder, value):
    path = prompt_folder / "prompts.json"
    path.write_text(json.dumps(value))  # NaN and Infinity as JavaScript writes them
    read_prompts_or_refusal(path)


@given(
    st.lists(st.lists(CORRECT_PROMPTS, min_size=1, max_size=3), min_size=1, max_size=3),
    st.booleans(),
)
def test_a_correct_prompt_file_reads_exactly(prompt_folder, objects, mm):
    path = prompt_folder / "correct.json"
    content = {
        "coordinates": "mm" if mm else "voxel",
        "objects": [
            {"name": f"lesion {i}", "prompts": [p.to_dict() for p in prompts]}
            for i, prompts in enumerate(objects)
        ],
    }
    path.write_text(json.dumps(content))
    expected = [{"name": f"lesion {i}", "prompts": prompts} for i, prompts in enumerate(objects)]
    assert read_prompt_file(path) == (expected, mm)


@st.composite
def damaged_json_bytes(draw) -> bytes:
    """A prompts file cut short, with a byte changed, in another encoding, or random bytes."""
    text = json.dumps({"objects": [{"name": "lesion", "prompts": [{"point": [10, 9, 8]}]}]})
    how = draw(st.sampled_from(["cut", "byte", "encoding", "random"]))
    if how == "cut":
        return text.encode()[: draw(st.integers(0, len(text) - 1))]
    if how == "byte":
        data = bytearray(text.encode())
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "encoding":
        return text.encode(draw(st.sampled_from(["utf-16", "utf-32", "utf-8-sig", "cp500"])))
    return draw(st.binary(max_size=40))


@given(damaged_json_bytes())
@example(b"[" * 100_000)  # nested deeper than Python's recursion limit
@example(b'{"objects": [{"prompts": [{"point": [' + b"9" * 5000 + b", 0, 0]}]}]}")
@example(b"\xff\xfe\x00")
@example(b"")
def test_damaged_prompt_file_bytes_are_refused_in_one_line(prompt_folder, data):
    path = prompt_folder / "damaged.json"
    path.write_bytes(data)
    read_prompts_or_refusal(path)


# =============================================================================================
# 3. NIfTI headers
# =============================================================================================

SPECIAL_FLOATS = st.one_of(
    st.sampled_from(
        [
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.5,
            -4.0,
            math.nan,
            math.inf,
            -math.inf,
            1e-30,
            1e-45,
            1e30,
            3e38,
            1e300,
        ]
    ),
    st.floats(width=32),
)
SCALAR_DTYPES = [
    np.uint8,
    np.int8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float32,
    np.float64,
]
DATATYPE_CODES = sorted(nib.nifti1.data_type_codes.value_set()) + [-1, 3, 999, 32767]
DIM_VALUES = st.one_of(
    st.integers(-2, 8), st.sampled_from([32767, 30000, 2**31, 2**40, 2**62, -(2**31)])
)
HEADER_EDITS = st.one_of(
    st.tuples(st.just("dim"), st.integers(0, 7), DIM_VALUES),
    st.tuples(st.just("pixdim"), st.integers(0, 7), SPECIAL_FLOATS),
    st.tuples(st.just("datatype"), st.none(), st.sampled_from(DATATYPE_CODES)),
    st.tuples(st.just("bitpix"), st.none(), st.sampled_from([0, 1, 8, 16, 32, 64, 128, -8])),
    st.tuples(
        st.sampled_from(["sform_code", "qform_code"]), st.none(), st.integers(-1, 6) | st.just(255)
    ),
    st.tuples(st.sampled_from(["srow_x", "srow_y", "srow_z"]), st.integers(0, 3), SPECIAL_FLOATS),
    st.tuples(
        st.sampled_from(["quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_z"]),
        st.none(),
        SPECIAL_FLOATS,
    ),
    st.tuples(st.sampled_from(["scl_slope", "scl_inter"]), st.none(), SPECIAL_FLOATS),
    st.tuples(
        st.just("vox_offset"),
        st.none(),
        st.sampled_from([0, 1, 100, 347, 351, 352, 353, 540, 543, 544, 10**9, -1, -352])
        | NON_FINITE,
    ),
    st.tuples(st.just("magic"), st.none(), st.sampled_from([b"n+1", b"ni1", b"n+2", b"xyz", b""])),
)


AFFINES = {
    "axial": AFFINE,
    "flipped": np.diag([-2.0, 3.0, 1.5, 1.0]),
    "rotated": np.array(
        [[0.0, -3.0, 0.0, 10.0], [2.0, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 30.0], [0, 0, 0, 1]]
    ),
}


@dataclass(frozen=True)
class NiftiCase:
    """How to make one damaged NIfTI file: a small array written by nibabel, then raw header
    edits, then the file cut short (``cut`` bytes kept) or grown (``grow`` zero bytes added).
    A recipe rather than bytes, so that a failing example prints readably."""

    array: np.ndarray = field(default_factory=lambda: np.ones((4, 5, 6), np.float32))
    version: int = 1
    affine: str = "axial"
    forms: bool = True
    edits: tuple = ()
    cut: int | None = None
    grow: int = 0
    gz: bool = False

    def data(self) -> bytes:
        data = nifti_bytes(self.array, AFFINES[self.affine], version=self.version, forms=self.forms)
        data = edit_header_fields(data, list(self.edits))
        data = data[: self.cut] if self.cut is not None else data
        return data + bytes(self.grow)


@st.composite
def nifti_cases(draw) -> NiftiCase:
    shape = draw(st.tuples(*[st.integers(1, 6)] * 3))
    array = draw(hnp.arrays(draw(st.sampled_from(SCALAR_DTYPES)), shape))
    version = draw(st.sampled_from([1, 2]))
    tail = draw(st.sampled_from(["keep", "cut", "grow"]))
    size = (352 if version == 1 else 544) + array.nbytes
    return NiftiCase(
        array=array,
        version=version,
        affine=draw(st.sampled_from(sorted(AFFINES))),
        forms=draw(st.booleans()),
        edits=tuple(draw(st.lists(HEADER_EDITS, max_size=4))),
        cut=draw(st.integers(0, size - 1)) if tail == "cut" else None,
        grow=draw(st.integers(1, 64)) if tail == "grow" else 0,
        gz=draw(st.booleans()),
    )


#: What this machine "has available" in these tests: a header claiming more is refused before
#: anything is read, so no test allocates more than this.
MEMORY_FOR_TESTS = 64 << 20


@pytest.fixture(scope="module")
def nifti_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nifti")


def write_nifti_case(folder: Path, data: bytes, gz: bool) -> Path:
    path = folder / ("case.nii.gz" if gz else "case.nii")
    for old in folder.glob("case.*"):
        old.unlink()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def stored_header(data: bytes):
    """The raw header fields, or None when the bytes hold no complete header."""
    if len(data) < 4:
        return None
    try:
        return nifti_header_of(data)
    except Exception:
        return None


def check_accepted_geometry(header, affine: np.ndarray, shape: tuple[int, ...]) -> None:
    """An accepted image has the header's shape and a usable affine that the header gave."""
    assert header is not None, "a file without a complete header was accepted"
    dim = [int(n) for n in header["dim"]]
    assert (
        3 <= dim[0] <= 7 and tuple(dim[1:4]) == shape and all(n == 1 for n in dim[4 : dim[0] + 1])
    )
    affine = np.asarray(affine)
    assert affine.shape == (4, 4) and np.isfinite(affine).all()
    assert abs(np.linalg.det(affine[:3, :3])) > 0 and np.isfinite(np.linalg.inv(affine)).all()
    pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    assert np.isfinite(pixdim).all() and (pixdim != 0).all(), pixdim  # never a 1 mm default
    valid = set(nib.nifti1.xform_codes.value_set()) - {0}
    if int(header["sform_code"]) in valid:
        sform = np.array([header["srow_x"], header["srow_y"], header["srow_z"]], np.float64)
        np.testing.assert_allclose(affine[:3], sform, rtol=1e-6)
    elif int(header["qform_code"]) not in valid:
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        np.testing.assert_allclose(spacing, np.abs(pixdim), rtol=1e-6)


@settings(max_examples=examples(150))
@given(nifti_cases())
@example(case=NiftiCase(edits=(("vox_offset", None, math.nan),)))
@example(case=NiftiCase(edits=(("vox_offset", None, math.inf),)))
@example(case=NiftiCase(edits=(("vox_offset", None, -100.0),)))
@example(case=NiftiCase(edits=(("scl_slope", None, 2.0), ("scl_inter", None, math.nan))))
@example(case=NiftiCase(edits=(("vox_offset", None, 10**9),), gz=True))
def test_a_nifti_header_reads_as_its_image_or_is_refused_in_one_line(nifti_folder, case):
    data = case.data()
    path = write_nifti_case(nifti_folder, data, case.gz)
    header = stored_header(data)
    with (
        quiet(),
        mock.patch("seganypet.io.limits.available_memory_bytes", return_value=MEMORY_FOR_TESTS),
    ):
        try:
            image = load_image(path)
        except InputError as exc:
            assert_one_line(str(exc))
            image = None
        try:
            labels, label_affine = read_nifti_labels(path)
        except InputError as exc:
            assert_one_line(str(exc))
            labels = None
    event(f"image {'read' if image is not None else 'refused'}")
    event(f"labels {'read' if labels is not None else 'refused'}")
    if image is not None:
        assert image.array.dtype == np.float32 and np.isfinite(image.array).all()
        check_accepted_geometry(header, image.affine, image.shape)
    if labels is not None:
        check_accepted_geometry(header, label_affine, labels.shape)
        with quiet():
            values = np.asanyarray(nib.load(str(path)).dataobj).reshape(labels.shape)
        # The stored labels: none wrapped around (a label map is read as uint16).
        assert 0 <= float(np.rint(values).min()) and float(np.rint(values).max()) <= 65535
        assert np.array_equal(labels, np.rint(values)), (values, labels)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("version", [1, 2])
def test_labels_beyond_what_a_label_map_holds_are_refused(nifti_folder, version, gz):
    for value in (70_000, 1e20):
        data = nifti_bytes(np.full((4, 5, 6), value, np.float64), version=version)
        path = write_nifti_case(nifti_folder, data, gz)
        with pytest.raises(InputError, match="label"):
            read_nifti_labels(path)


# =============================================================================================
# 4. DICOM PET headers with the SUV tags missing or garbled
# =============================================================================================

NUMBER_TEXTS = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-0",
            "-5",
            "70\\80",
            "1e308",
            "1e-300",
            "1e309",
            "nan",
            "inf",
            "-inf",
            "abc",
            "7O",
            "1,5",
        ]
    ),
    FINITE.map(repr),
    st.text(alphabet="0123456789.-+eE ", max_size=10),
)
DATE_TEXTS = st.one_of(
    st.sampled_from(
        [
            "",
            "00000000",
            "00010101",
            "99991231",
            "20201301",
            "20200230",
            "2020",
            "2020-01-01",
            "19910419",
            "abcdefgh",
        ]
    ),
    st.dates().map(lambda d: d.strftime("%Y%m%d").zfill(8)),
)
TIME_TEXTS = st.one_of(
    st.sampled_from(
        [
            "",
            "240000",
            "235960",
            "1658",
            "16",
            "16:58:52",
            "165852.123456789",
            "ab:cd",
            "-10000",
            "000000",
        ]
    ),
    st.times().map(lambda t: t.strftime("%H%M%S.%f")),
)
DATETIME_TEXTS = st.one_of(
    st.tuples(DATE_TEXTS, TIME_TEXTS, st.sampled_from(["", "+0100", "-0500", "&0000"])).map(
        "".join
    ),
    st.sampled_from(["", "2020", "19910419", "00010101000000"]),
)
CODE_TEXTS = st.sampled_from(
    ["", "BQML", "bqml", "GML", "CNTS", "PROPCNTS", "START", "ADMIN", "NONE", "M", "F", "O",
     "ATTN\\DECY", "DECY", "ATTN", "BQML\nX", "\x00"]
)  # fmt: skip
KINDS = {
    "PatientWeight": NUMBER_TEXTS,
    "PatientSize": NUMBER_TEXTS,
    "PatientSex": CODE_TEXTS,
    "Units": CODE_TEXTS,
    "DecayCorrection": CODE_TEXTS,
    "CorrectedImage": CODE_TEXTS,
    "SeriesDate": DATE_TEXTS,
    "SeriesTime": TIME_TEXTS,
    "AcquisitionDate": DATE_TEXTS,
    "AcquisitionTime": TIME_TEXTS,
    "RescaleSlope": NUMBER_TEXTS,
    "RescaleIntercept": NUMBER_TEXTS,
}
RADIOPHARMACEUTICAL_KINDS = {
    "RadionuclideTotalDose": NUMBER_TEXTS,
    "RadionuclideHalfLife": NUMBER_TEXTS,
    "RadiopharmaceuticalStartTime": TIME_TEXTS,
    "RadiopharmaceuticalStartDateTime": DATETIME_TEXTS,
}
GE_CREATOR, PHILIPS_CREATOR = "GEMS_PETD_01", "Philips PET Private Group"
PRIVATE_KINDS = {
    "GEPrivateScanDateTime": (0x0009, GE_CREATOR, 0x0D, "DT", DATETIME_TEXTS),
    "SUVScaleFactor": (0x7053, PHILIPS_CREATOR, 0x00, "DS", NUMBER_TEXTS),
    "ActivityConcentrationScaleFactor": (0x7053, PHILIPS_CREATOR, 0x09, "DS", NUMBER_TEXTS),
}
SUV_TYPES = st.sampled_from(["bw", "lbm", "bsa", "ibw"])
NAMES_IN_MESSAGES = [*TAG_NUMBERS, *OVERRIDE_FLAGS.values(), "--injection-time"]


def raw_element(tag: int, vr: str, text: str) -> RawDataElement:
    """An element as read from a file, so that a value its VR forbids reaches the reader."""
    value = text.encode("utf-8", "surrogatepass")
    if len(value) % 2:
        value += b" "
    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def set_raw(dataset: Dataset, keyword: str, text: str | None) -> None:
    tag = tag_for_keyword(keyword)
    if text is None:
        if tag in dataset:
            del dataset[tag]
    else:
        dataset[tag] = raw_element(tag, dictionary_VR(tag), text)


def set_private(dataset: Dataset, name: str, text: str | None) -> None:
    group, creator, offset, vr, _ = PRIVATE_KINDS[name]
    block = dataset.private_block(group, creator, create=True)
    tag = block.get_tag(offset)
    if text is None:
        if tag in dataset:
            del dataset[tag]
    else:
        dataset[tag] = raw_element(tag, vr, text)


@st.composite
def header_edits(draw) -> list[tuple[str, str, str | None]]:
    """Edits of the tags SUV depends on: (where, keyword, new text or None to delete)."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["main", "radiopharmaceutical", "private", "sequence"]))
        if where == "sequence":
            edits.append(
                (
                    where,
                    "RadiopharmaceuticalInformationSequence",
                    draw(st.sampled_from(["delete", "empty", "two items"])),
                )
            )
            continue
        kinds = {"main": KINDS, "radiopharmaceutical": RADIOPHARMACEUTICAL_KINDS}.get(where)
        keyword = draw(st.sampled_from(sorted(kinds or PRIVATE_KINDS)))
        text_strategy = (kinds or {k: v[4] for k, v in PRIVATE_KINDS.items()})[keyword]
        edits.append((where, keyword, draw(st.none() | text_strategy | st.text(max_size=12))))
    return edits


def apply_edits(dataset: Dataset, edits) -> None:
    for where, keyword, text in edits:
        if where == "main":
            set_raw(dataset, keyword, text)
        elif where == "private":
            set_private(dataset, keyword, text)
        elif where == "sequence":
            if text == "delete":
                if keyword in dataset:
                    delattr(dataset, keyword)
            elif text == "empty":
                setattr(dataset, keyword, Sequence([]))
            else:
                items = list(dataset.get(keyword) or [Dataset()])
                setattr(dataset, keyword, Sequence([items[0], copy.deepcopy(items[0])]))
        else:
            sequence = dataset.get("RadiopharmaceuticalInformationSequence")
            if not sequence:
                dataset.RadiopharmaceuticalInformationSequence = Sequence([Dataset()])
                sequence = dataset.RadiopharmaceuticalInformationSequence
            set_raw(sequence[0], keyword, text)


OVERRIDES = st.one_of(
    st.just(SuvOverrides()),
    st.builds(
        SuvOverrides,
        weight_kg=st.none() | st.floats(),
        dose_mbq=st.none() | st.floats(),
        injection_time=st.none() | TIME_TEXTS | DATETIME_TEXTS | st.text(max_size=8),
        height_cm=st.none() | st.floats(),
        sex=st.none() | st.sampled_from(["M", "F", "male", "X", ""]),
    ),
)


@cache
def real_pet_headers() -> dict[str, list[Dataset]]:
    ctac = shared_path("data", "suv", "delia_nsclc_r01_005", "PET_BODY_CTAC")
    sts = shared_path("data", "sts001_wholebody_ge", "image")
    return {
        "ctac": [
            pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(ctac.glob("1-*.dcm"))[:3]
        ],
        "sts001": [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(sts.iterdir())[:3]],
    }


def check_suv_outcome(headers, suv_type: str, overrides: SuvOverrides) -> float | None:
    try:
        result = suv_factor(headers, suv_type, overrides)
    except InputError as exc:
        message = str(exc)
        assert_one_line(message)
        assert any(name in message for name in NAMES_IN_MESSAGES), message
        return None
    event("a finite positive factor")
    assert type(result.factor) is float and math.isfinite(result.factor) and result.factor > 0
    return result.factor


@settings(max_examples=examples(150))
@given(
    st.sampled_from(["ctac", "sts001", "ctac-philips"]),
    header_edits(),
    st.booleans(),
    SUV_TYPES,
    OVERRIDES,
)
@example(
    "ctac", [("radiopharmaceutical", "RadionuclideHalfLife", "1e-10")], True, "bw", SuvOverrides()
)
@example(
    "ctac",
    [("radiopharmaceutical", "RadiopharmaceuticalStartDateTime", "00010101120000")],
    True,
    "bw",
    SuvOverrides(),
)
@example("ctac", [("main", "Units", "BQML\nX")], True, "bw", SuvOverrides())
@example(
    "ctac", [("main", "Units", "BQML")], True, "lbm", SuvOverrides(height_cm=1.3407807929942597e156)
)
@example("ctac", [("main", "Units", "BQML")], True, "lbm", SuvOverrides(height_cm=1e-300))
def test_a_garbled_suv_header_gives_a_finite_factor_or_names_the_tag(
    base, edits, every_instance, suv_type, overrides
):
    headers = [copy.deepcopy(h) for h in real_pet_headers()[base.split("-")[0]]]
    if base.endswith("philips"):
        for header in headers:
            set_raw(header, "Units", "CNTS")
            set_private(header, "SUVScaleFactor", "0.000728")
    for header in headers if every_instance else headers[:1]:
        apply_edits(header, edits)
    with quiet():
        check_suv_outcome(headers, suv_type, overrides)


JSON_HEADER_VALUES = st.one_of(
    NUMBER_TEXTS,
    DATE_TEXTS,
    TIME_TEXTS,
    CODE_TEXTS,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.lists(NUMBER_TEXTS | CODE_TEXTS, max_size=3),
    st.dictionaries(
        st.sampled_from(["SUVScaleFactor", "ActivityConcentrationScaleFactor", "x"]),
        NUMBER_TEXTS,
        max_size=2,
    ),
)
JSON_HEADER_KEYS = sorted(
    {
        *KINDS,
        *RADIOPHARMACEUTICAL_KINDS,
        "PhilipsPETPrivateGroup",
        "GEPrivateScanDateTime",
        "RadiopharmaceuticalInformationSequence",
    }
)


@cache
def json_header_cases() -> dict[str, list[dict]]:
    folder = shared_path("data", "suv", "calculate_suv_metadata")
    return {
        p.name.removesuffix("-instances.json"): json.loads(p.read_text())
        for p in sorted(folder.glob("*-instances.json"))
    }


@settings(max_examples=examples(150))
@given(
    st.sampled_from(sorted(CALCULATE_SUV_CASES)),
    st.lists(
        st.tuples(st.sampled_from(JSON_HEADER_KEYS), st.just("delete") | JSON_HEADER_VALUES),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
    SUV_TYPES,
)
@example("SIEMENS", [("PatientWeight", 10**400)], True, "bw")
@example("GE_MEDICAL_AND_BQML", [("CorrectedImage", 7)], True, "bw")
def test_a_garbled_json_header_gives_a_finite_factor_or_names_the_tag(
    case, edits, every_instance, suv_type
):
    instances = copy.deepcopy(json_header_cases()[case])
    for instance in instances if every_instance else instances[:1]:
        for key, value in edits:
            if value == "delete":
                instance.pop(key, None)
            else:
                instance[key] = value
    check_suv_outcome(instances, suv_type, SuvOverrides())


@pytest.fixture(scope="module")
def ctac_slices(tmp_path_factory) -> list[Path]:
    source = shared_path("data", "suv", "delia_nsclc_r01_005", "PET_BODY_CTAC")
    return sorted(source.glob("1-*.dcm"))[:3]


@st.composite
def rescale_edits(draw) -> list[str | None]:
    return draw(st.lists(st.none() | NUMBER_TEXTS, min_size=3, max_size=3))


@settings(max_examples=examples(12), suppress_health_check=[HealthCheck.too_slow])
@given(header_edits(), rescale_edits(), rescale_edits())
@example(edits=[("main", "PatientWeight", "7O")], slopes=["abc"] * 3, intercepts=[None] * 3)
@example(edits=[("main", "Units", "BQML")], slopes=["0", "0", "0"], intercepts=[None] * 3)
@example(edits=[("main", "Units", "BQML")], slopes=["", "", ""], intercepts=["", "", ""])
@example(edits=[("main", "Units", "BQML")], slopes=["70\\80"] * 3, intercepts=["x"] * 3)
def test_a_series_of_garbled_slices_reads_in_suv_or_is_refused_in_one_line(
    tmp_path_factory, ctac_slices, edits, slopes, intercepts
):
    folder = tmp_path_factory.mktemp("series")
    expected = {}
    for source, slope, intercept in zip(ctac_slices, slopes, intercepts, strict=True):
        dataset = pydicom.dcmread(source)
        apply_edits(dataset, edits)
        if slope is not None:
            set_raw(dataset, "RescaleSlope", slope)
        if intercept is not None:
            set_raw(dataset, "RescaleIntercept", intercept)
        dataset.save_as(folder / source.name, enforce_file_format=False)
        # What the slice holds: its stored values times the slope and plus the intercept it
        # says, when it says a usable number (absent: 1 and 0).
        pixels = dataset.pixel_array.T.astype(np.float64)
        rescale = [dataset.get(keyword) for keyword in ("RescaleSlope", "RescaleIntercept")]
        expected[dataset.SOPInstanceUID] = (
            pixels,
            *[None if v is None else str(v) for v in rescale],
        )
    with quiet():
        try:
            image = load_image(folder)
        except InputError as exc:
            assert_one_line(str(exc))
            return
    assert image.array.dtype == np.float32 and np.isfinite(image.array).all()
    factor = image.metadata["suv_factor"]
    for k, header in enumerate(image.dicom_headers):
        pixels, slope, intercept = expected[header.SOPInstanceUID]
        slope_value = 1.0 if slope is None else usable_number(slope)
        intercept_value = 0.0 if intercept is None else usable_number(intercept, zero_ok=True)
        assert slope_value is not None and intercept_value is not None, (
            f"slice {k}: RescaleSlope {slope!r} / RescaleIntercept {intercept!r} read as a number"
        )
        np.testing.assert_allclose(
            image.array[:, :, k],
            (pixels * slope_value + intercept_value) * factor,
            rtol=1e-5,
            atol=1e-30,  # float32 flushes what is smaller to zero
        )
    shutil.rmtree(folder)


def usable_number(text: str, zero_ok: bool = False) -> float | None:
    """A DICOM DS as a reader must take it: one finite number (non-zero for a slope); an empty
    value counts as absent."""
    if not text.strip(" \x00"):
        return 0.0 if zero_ok else 1.0
    try:
        value = float(text.strip(" \x00"))
    except ValueError:
        return None
    return value if math.isfinite(value) and (zero_ok or value != 0) else None
