"""The Parquet archive of trimmed events.

Retention writes the events it removes from the log to Parquet files first,
one file per step and UTC day of `recordedtime`:

    archive/day=2026-12-04/events-1-10000.parquet

The name carries the first and last sequence of the file, so the archive
knows its extent without opening a file. A file is written under a
temporary name, synced, renamed, and its folder synced, so a crash leaves
either the whole file or no file under the final name; `remove_partial_files`
deletes what a crash left under temporary names.

Every file has the columns of `ARCHIVE_SCHEMA`: the sequence, the time the
log recorded the event, its attributes, and the event as delivered to
readers (`event`, JSON text).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from eventlog.errors import LogUnavailable

# The pyarrow modules for compute, datasets and Parquet are imported where
# they are used, because importing them takes about 45 ms (2-core machine,
# pyarrow 26.0.1). A server needs them only for retention, queries and
# exports, not to start serving.
if TYPE_CHECKING:
    import pyarrow.dataset as ds

logger = logging.getLogger(__name__)

ARCHIVE_SCHEMA = pa.schema(
    [
        ("sequence", pa.int64()),
        ("recordedtime", pa.timestamp("us", tz="UTC")),
        ("id", pa.string()),
        ("source", pa.string()),
        ("specversion", pa.string()),
        ("type", pa.string()),
        ("subject", pa.string()),
        ("time", pa.string()),
        ("datacontenttype", pa.string()),
        ("dataschema", pa.string()),
        ("extensions", pa.map_(pa.string(), pa.string())),
        ("event", pa.string()),
    ]
)
ARCHIVE_COLUMNS = tuple(ARCHIVE_SCHEMA.names)

_DAY_FOLDER = re.compile(r"day=(\d{4}-\d{2}-\d{2})")
_FILE_NAME = re.compile(r"events-(\d+)-(\d+)\.parquet")
_PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True, slots=True, order=True)
class ArchiveFile:
    """One archive file and the range of sequences it holds, `first` to `last` inclusive."""

    first: int
    last: int
    day: date
    path: Path


class Archive:
    """The archive files under one folder, which need not exist yet."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def files(self) -> list[ArchiveFile]:
        """Return the complete archive files in sequence order; other files are ignored."""
        found: list[ArchiveFile] = []
        if not self.directory.is_dir():
            return found
        for folder in self.directory.iterdir():
            day_match = _DAY_FOLDER.fullmatch(folder.name)
            if day_match is None or not folder.is_dir():
                continue
            day = date.fromisoformat(day_match.group(1))
            for path in folder.iterdir():
                name_match = _FILE_NAME.fullmatch(path.name)
                if name_match is not None:
                    first, last = int(name_match.group(1)), int(name_match.group(2))
                    found.append(ArchiveFile(first, last, day, path))
        return sorted(found)

    def archived_through(self) -> int:
        """Return the highest archived sequence, 0 when the archive is empty."""
        return max((file.last for file in self.files()), default=0)

    def dataset(self, files: Iterable[ArchiveFile] | None = None) -> ds.Dataset:
        """Return a dataset over `files` (default: every file); empty when there are none."""
        import pyarrow.dataset as ds

        chosen = self.files() if files is None else list(files)
        paths = [str(file.path) for file in chosen]
        return ds.dataset(paths, schema=ARCHIVE_SCHEMA, format="parquet")

    def read(self, after: int, last: int) -> pa.Table:
        """Return the archived events with `after < sequence <= last`, in sequence order."""
        import pyarrow.compute as pc

        files = [file for file in self.files() if file.last > after and file.first <= last]
        if not files:
            return ARCHIVE_SCHEMA.empty_table()
        condition = (pc.field("sequence") > after) & (pc.field("sequence") <= last)
        table = self.dataset(files).to_table(filter=condition)
        return table.sort_by("sequence")

    def first_recorded_at(self, moment: datetime) -> int | None:
        """Return the first archived sequence recorded at or after `moment`, if any."""
        import pyarrow.compute as pc

        day = moment.astimezone(UTC).date()
        files = [file for file in self.files() if file.day >= day]
        if not files:
            return None
        table = self.dataset(files).to_table(
            columns=["sequence"], filter=pc.field("recordedtime") >= moment
        )
        if table.num_rows == 0:
            return None
        first: int = pc.min(table.column("sequence")).as_py()
        return first

    def write(self, batches: Iterable[pa.RecordBatch]) -> list[ArchiveFile]:
        """Write events, in sequence order, to one new file per UTC day; return the files.

        NOTE: files are never merged, so a log trimmed in small steps leaves
        many small files, which queries and exports open one by one.

        Each file is durable under its final name when this returns. Raises
        `LogUnavailable` when a file cannot be written; files completed
        before the failure stay.
        """
        written: list[ArchiveFile] = []
        writer: _DayWriter | None = None
        try:
            for batch in batches:
                batch = batch.cast(ARCHIVE_SCHEMA)
                for day, part in _split_by_day(batch):
                    if writer is not None and writer.day != day:
                        written.append(writer.finish())
                        writer = None
                    if writer is None:
                        writer = _DayWriter(self.directory, day, part.column("sequence")[0].as_py())
                    writer.write(part)
            if writer is not None:
                written.append(writer.finish())
                writer = None
        except (OSError, pa.ArrowException) as error:
            raise LogUnavailable(
                f"Cannot write the archive in {str(self.directory)!r}: {error}. Check that the "
                "folder is writable and the disk has space; the events stay in the log until then."
            ) from error
        finally:
            if writer is not None:
                writer.abandon()
        return written

    def remove_partial_files(self) -> None:
        """Delete files that an interrupted `write` left under temporary names."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob(f"day=*/*{_PARTIAL_SUFFIX}"):
            logger.warning("Removing the partial archive file %s of an interrupted write", path)
            path.unlink(missing_ok=True)


class _DayWriter:
    """One archive file being written under a temporary name."""

    def __init__(self, directory: Path, day: date, first: int) -> None:
        import pyarrow.parquet as pq

        self.day = day
        self.first = first
        self.last = first - 1
        self.folder = directory / f"day={day.isoformat()}"
        created = _make_folders(self.folder)
        self.partial = self.folder / f"events-{first}{_PARTIAL_SUFFIX}"
        self._writer = pq.ParquetWriter(self.partial, ARCHIVE_SCHEMA)
        for folder in created:
            _sync_folder(folder.parent)

    def write(self, part: pa.RecordBatch) -> None:
        self._writer.write_batch(part)
        self.last = part.column("sequence")[-1].as_py()

    def finish(self) -> ArchiveFile:
        self._writer.close()
        _sync_file(self.partial)
        path = self.folder / f"events-{self.first}-{self.last}.parquet"
        os.replace(self.partial, path)
        _sync_folder(self.folder)
        logger.info("Archived events %d to %d in %s", self.first, self.last, path)
        return ArchiveFile(self.first, self.last, self.day, path)

    def abandon(self) -> None:
        try:
            self._writer.close()
        finally:
            self.partial.unlink(missing_ok=True)


def _split_by_day(batch: pa.RecordBatch) -> Iterable[tuple[date, pa.RecordBatch]]:
    import pyarrow.compute as pc

    # `recordedtime` never decreases with the sequence, so each day is one run of rows.
    days = pc.cast(batch.column("recordedtime"), pa.date32()).to_pylist()
    start = 0
    for index in range(1, len(days) + 1):
        if index == len(days) or days[index] != days[start]:
            yield days[start], batch.slice(start, index - start)
            start = index


def _make_folders(folder: Path) -> list[Path]:
    missing = [path for path in (folder.parent, folder) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _sync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    # A rename or a new entry is durable only once its folder is synced.
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
