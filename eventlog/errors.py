"""Exceptions raised by the event log.

Storage backends translate their driver's errors into these once, at the
storage boundary, so that callers never see a database-specific exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class EventLogError(Exception):
    """Base class of every error the event log raises on purpose."""


@dataclass(frozen=True, slots=True)
class AttributeProblem:
    """One problem with one attribute of one event in a request."""

    index: int
    attribute: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "attribute": self.attribute, "message": self.message}


class InvalidEvent(EventLogError):
    """One or more events violate the CloudEvents 1.0.2 specification.

    `errors` lists every problem found, each with the index of the event in
    the request and the attribute at fault, so a client can fix them all at
    once.
    """

    def __init__(self, errors: list[AttributeProblem]) -> None:
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            f"Event {first.index}, attribute {first.attribute!r}: {first.message}{more}"
        )


class EventTooLarge(EventLogError):
    """An event's encoded size exceeds the configured maximum."""

    def __init__(self, index: int, size: int, limit: int) -> None:
        self.index = index
        self.size = size
        self.limit = limit
        super().__init__(
            f"Event {index} is {size} bytes when encoded, more than the maximum of "
            f"{limit} bytes. Move large payloads elsewhere and publish a reference to them."
        )


class DuplicateConflict(EventLogError):
    """An event reuses the `source` and `id` of a stored event with different content."""

    def __init__(self, index: int, source: str, id: str, sequence: int) -> None:
        self.index = index
        self.source = source
        self.id = id
        self.sequence = sequence
        super().__init__(
            f"Event {index} has source {source!r} and id {id!r}, which identify the "
            f"different event at sequence {sequence}. Give a new event a new id."
        )


class LogUnavailable(EventLogError):
    """The log cannot commit right now: the disk is full, it is failing, or the log is closing.

    Nothing of the failed request was written, unless `maybe_written` is
    true. Then the log could not find out, and a retry with the same events
    shows it, because events already written get their original sequences.
    """

    def __init__(self, message: str, retry_after: int = 5, maybe_written: bool = False) -> None:
        self.retry_after = retry_after
        self.maybe_written = maybe_written
        super().__init__(message)


class StorageInvalidated(LogUnavailable):
    """The storage cannot be used until it is reopened, after a fatal error such as a full disk.

    The operation that raised it may have been stored anyway, as when a
    commit succeeded but the checkpoint that followed it failed. The writer
    reopens the storage and reads the head back to learn which.
    """


class CursorExpired(EventLogError):
    """A cursor points before the oldest event that the log still retains.

    With `since`, the read started at a time instead, and retention removed
    events recorded at or after it.
    """

    def __init__(self, cursor: int, earliest: int, since: datetime | None = None) -> None:
        self.cursor = cursor
        self.earliest = earliest
        self.since = since
        if since is None:
            message = f"Cursor {cursor} is older than the retention horizon"
        else:
            message = (
                f"Retention removed events recorded at or after {since.isoformat()}, so a "
                "read from that time would miss them"
            )
        super().__init__(
            f"{message}; the earliest available sequence is {earliest}. "
            f"Restart from after={earliest - 1}; older events are in the Parquet archive."
        )


class InvalidFilter(EventLogError):
    """A feed filter names an attribute or a value that cannot match anything."""

    def __init__(self, attribute: str, message: str) -> None:
        self.attribute = attribute
        super().__init__(message)


class InvalidFilterExpression(InvalidFilter):
    """A subscription's filter expression is malformed.

    `path` locates the bad part in the request body, such as
    `filters[0].all[1].prefix.type`, and the message starts with it.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(path, f"{path}: {message}")


class QueryRejected(EventLogError):
    """A history query is not a single read-only statement, or DuckDB cannot run it."""


class QueryTimedOut(EventLogError):
    """A history query ran longer than its time limit and was interrupted."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"The query ran longer than the limit of {seconds:g} s and was stopped. "
            "Narrow it with a WHERE clause on sequence or recordedtime, or aggregate more."
        )


class TokenExists(EventLogError):
    """A token with this name exists already."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"A token named {name!r} exists already; revoke it first or choose another name."
        )
