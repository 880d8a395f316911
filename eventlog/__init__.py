"""A durable, totally ordered log of CloudEvents on an embedded database.

The package is usable on its own, without HTTP:

>>> from eventlog import EventLog, Filter, parse_event
"""

from eventlog.errors import (
    AttributeProblem,
    CursorExpired,
    DuplicateConflict,
    EventLogError,
    EventTooLarge,
    InvalidEvent,
    InvalidFilter,
    LogUnavailable,
)
from eventlog.event import Event, parse_batch, parse_event
from eventlog.filters import Filter
from eventlog.log import EventLog, Page
from eventlog.writer import Appended

__all__ = [
    "Appended",
    "AttributeProblem",
    "CursorExpired",
    "DuplicateConflict",
    "Event",
    "EventLog",
    "EventLogError",
    "EventTooLarge",
    "Filter",
    "InvalidEvent",
    "InvalidFilter",
    "LogUnavailable",
    "Page",
    "parse_batch",
    "parse_event",
]
