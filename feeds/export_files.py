"""The files that `eventlog export` writes: Parquet, JSON Lines and CSV.

The writers take Arrow batches with the columns of the archive
(`eventlog.archive.ARCHIVE_SCHEMA`) in sequence order. JSON Lines contains each
event as delivered, one per line. Parquet and CSV hold one column per
attribute: `sequence`, `recordedtime`, the core attributes, `extensions`
(a map in Parquet, a JSON object in CSV), `data` (JSON text) and
`data_base64`.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from eventlog.archive import ARCHIVE_SCHEMA

_ATTRIBUTE_COLUMNS = [name for name in ARCHIVE_SCHEMA.names if name != "event"]
TABLE_SCHEMA = pa.schema(
    [
        *(ARCHIVE_SCHEMA.field(name) for name in _ATTRIBUTE_COLUMNS),
        pa.field("data", pa.string()),
        pa.field("data_base64", pa.string()),
    ]
)


class ExportFile(Protocol):
    """An export file being written."""

    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None:
        """Finish the file; it is complete when this returns."""
        ...

    def abandon(self) -> None:
        """Stop writing after a failure; the caller deletes the file."""
        ...


def open_export_file(file_format: str, path: Path) -> ExportFile:
    """Create the file at `path` in `file_format`: parquet, jsonl or csv."""
    if file_format == "jsonl":
        return JsonLinesFile(path)
    if file_format == "parquet":
        return ParquetFile(path)
    if file_format == "csv":
        return CsvFile(path)
    raise ValueError(f"Unknown export format {file_format!r}; use parquet, jsonl or csv.")


class JsonLinesFile:
    """Each event as delivered, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = path.open("wb")

    def write(self, batch: pa.RecordBatch) -> None:
        for event in batch.column("event").to_pylist():
            self._file.write(event.encode() + b"\n")

    def close(self) -> None:
        self._file.close()

    def abandon(self) -> None:
        self._file.close()


class ParquetFile:
    """One row per event, the extensions as a MAP column."""

    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(path, TABLE_SCHEMA)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(table_batch(batch))

    def close(self) -> None:
        self._writer.close()

    def abandon(self) -> None:
        self._writer.close()


class CsvFile:
    """One row per event with a header row, the extensions as a JSON object."""

    def __init__(self, path: Path) -> None:
        schema = TABLE_SCHEMA.set(
            TABLE_SCHEMA.get_field_index("extensions"), pa.field("extensions", pa.string())
        )
        self._schema = schema
        self._writer = pa_csv.CSVWriter(str(path), schema)

    def write(self, batch: pa.RecordBatch) -> None:
        table = table_batch(batch)
        extensions = [
            orjson.dumps(dict(entries)).decode()
            for entries in table.column("extensions").to_pylist()
        ]
        index = self._schema.get_field_index("extensions")
        columns = list(table.columns)
        columns[index] = pa.array(extensions, pa.string())
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._schema))

    def close(self) -> None:
        self._writer.close()

    def abandon(self) -> None:
        self._writer.close()


def table_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Return the batch with `data` and `data_base64` taken out of each event's JSON."""
    data: list[str | None] = []
    data_base64: list[str | None] = []
    for text in batch.column("event").to_pylist():
        event = orjson.loads(text)
        data.append(orjson.dumps(event["data"]).decode() if "data" in event else None)
        data_base64.append(event.get("data_base64"))
    columns = [batch.column(name) for name in _ATTRIBUTE_COLUMNS]
    columns += [pa.array(data, pa.string()), pa.array(data_base64, pa.string())]
    return pa.RecordBatch.from_arrays(columns, schema=TABLE_SCHEMA)
