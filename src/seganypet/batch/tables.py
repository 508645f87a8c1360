"""The batch's tables, written atomically: CSV for people and spreadsheets, Parquet for
analysis (typed columns, read by pandas, polars, R's arrow, DuckDB)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from seganypet.atomic import atomic_path, write_text_atomic


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Rows as CSV with a header line; a missing or NaN value is an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: _cell(row.get(column)) for column in columns})
    write_text_atomic(path, buffer.getvalue())


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)  # every digit: the CSV reads back to the same number
    return value


_ARROW_TYPES = {str: "string", int: "int64", float: "float64"}


def write_parquet(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, type]
) -> None:
    """Rows as a Parquet file whose columns have the given Python types (nulls allowed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in columns.items()])
    table = pa.Table.from_pylist(
        [{name: row.get(name) for name in columns} for row in rows], schema
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
