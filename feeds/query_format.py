"""The formats of a query result: JSON, CSV and Parquet.

The server responds to `POST /query` in them, and `eventlog query` writes them
when it reads the database file itself, so both give the same output.

The JSON form is `{"columns": [...], "types": [...], "rows": [[...], ...],
"truncated": false, "max_rows": 10000}`; JSON values from DuckDB are
embedded as JSON, maps become objects.
"""

from __future__ import annotations

import base64
import csv
import io
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

if TYPE_CHECKING:
    from eventlog.history import QueryResult

JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


class UnrenderableResult(ValueError):
    """A query result has a column that the requested format cannot hold."""


def render(result: QueryResult, media_type: str) -> bytes:
    """Return the result in one of the three media types; raises `UnrenderableResult`."""
    if media_type == PARQUET_MEDIA_TYPE:
        return _parquet(result.table)
    if media_type == CSV_MEDIA_TYPE:
        return _csv(result.table.column_names, rows(result.table))
    document = {
        "columns": result.table.column_names,
        "types": list(result.types),
        "rows": rows(result.table, result.types),
        "truncated": result.truncated,
        "max_rows": result.max_rows,
    }
    try:
        return orjson.dumps(document, default=json_value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as error:
        raise UnrenderableResult(
            f"The result cannot be written as JSON: {error}. Cast the column to a simpler "
            "type in the SELECT, or ask for CSV or Parquet."
        ) from error


def rows(table: pa.Table, types: tuple[str, ...] = ()) -> list[list[Any]]:
    """Return the rows as lists of Python values; maps become dicts.

    A column whose entry in `types` is JSON contains `orjson.Fragment`s, so that
    orjson embeds the JSON text as it is.
    """
    columns = [column.to_pylist(maps_as_pydicts="lossy") for column in table.columns]
    for index, column_type in enumerate(types):
        if column_type == "JSON":
            columns[index] = [
                None if value is None else orjson.Fragment(value) for value in columns[index]
            ]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def json_value(value: Any) -> Any:
    """Encode what orjson cannot: DuckDB's HUGEINT and DECIMAL, BLOB and INTERVAL values.

    Integral decimals that fit 64 bits become numbers, other decimals strings
    so that no digit is lost; blobs become Base64 and intervals seconds.
    """
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 2**63:
            return int(value)
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def text_value(value: Any) -> str:
    """Return a value as CSV or a table cell shows it: nested values as JSON, NULL as ''."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return orjson.dumps(value, default=json_value, option=orjson.OPT_NON_STR_KEYS).decode()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, Decimal, timedelta)):
        return str(json_value(value))
    return str(value)


def _parquet(table: pa.Table) -> bytes:
    # Imported here, as in eventlog.archive, because a server needs it only
    # to return query results as Parquet.
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    try:
        pq.write_table(table, sink)
    except (pa.ArrowException, ValueError) as error:
        raise UnrenderableResult(
            f"The result cannot be written as Parquet: {error}. Cast the column to a "
            "simpler type in the SELECT, or ask for JSON or CSV."
        ) from error
    return sink.getvalue()


def _csv(names: list[str], values: list[list[Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(names)
    for row in values:
        writer.writerow([text_value(value) for value in row])
    return text.getvalue().encode()
