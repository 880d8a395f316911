"""The in-memory tail: the newest events, already encoded as readers receive them.

Pages near the head and live streams are served from here without touching
the database. The tail is a ring indexed by sequence: because sequences are
dense, the event with sequence N sits in slot N modulo the capacity, and a
lookup costs O(1). It is bounded in events and in the bytes of the encoded
events, and drops its oldest events to stay within both. It is used from the
event loop's thread only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from eventlog.event import CORE_ATTRIBUTES
from eventlog.filters import Matcher
from eventlog.storage import ScanResult, StoredEvent

# An entry's attributes: the core attributes in the order of CORE_ATTRIBUTES,
# None where absent, then each extension's name and value.
Attributes = tuple[str | None, ...]

_CORE_INDEX = {name: index for index, name in enumerate(CORE_ATTRIBUTES)}
_CORE_COUNT = len(CORE_ATTRIBUTES)
# Attributes whose values repeat from event to event, so entries share one
# string object per value instead of holding a copy each.
_SHARED_VALUES = frozenset({"specversion", "type", "datacontenttype", "dataschema"})
# The log's own attributes: not filterable, so the tail does not keep them.
_LOG_ATTRIBUTES = frozenset({"sequence", "recordedtime"})


def pack_attributes(attributes: Mapping[str, str]) -> Attributes:
    """Return canonical attribute strings as a tuple in the fixed order of `Attributes`.

    For an event of benchmarks/workload.py, the tuple takes 136 bytes and the
    dict of its 11 attributes 464 (CPython 3.11, `sys.getsizeof`).
    """
    core: list[str | None] = [None] * _CORE_COUNT
    extensions: list[str] = []
    for name, value in attributes.items():
        index = _CORE_INDEX.get(name)
        if index is not None:
            core[index] = sys.intern(value) if name in _SHARED_VALUES else value
        elif name not in _LOG_ATTRIBUTES:
            extensions += (sys.intern(name), value)
    return (*core, *extensions)


class AttributeView(Mapping[str, str]):
    """A read-only mapping over packed `Attributes`, for filters to match against.

    A scan reuses one view for every entry by setting `packed`, so matching
    allocates nothing per event.
    """

    __slots__ = ("packed",)

    def __init__(self, packed: Attributes = ()) -> None:
        self.packed = packed

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        packed = self.packed
        index = _CORE_INDEX.get(name)
        if index is not None:
            value = packed[index] if index < len(packed) else None
            return default if value is None else value
        for position in range(_CORE_COUNT, len(packed) - 1, 2):
            if packed[position] == name:
                return packed[position + 1]
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        packed = self.packed
        for index, name in enumerate(CORE_ATTRIBUTES):
            if index < len(packed) and packed[index] is not None:
                yield name
        for position in range(_CORE_COUNT, len(packed) - 1, 2):
            yield packed[position]  # type: ignore[misc]

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True, slots=True)
class TailEntry:
    """One event in the tail: its packed filterable attributes and the event as readers get it."""

    stored: StoredEvent
    attributes: Attributes = field(repr=False)

    @classmethod
    def of(cls, sequence: int, attributes: Mapping[str, str], event: bytes) -> TailEntry:
        """Build an entry from canonical attribute strings, packing them."""
        return cls(StoredEvent(sequence, event), pack_attributes(attributes))

    @property
    def sequence(self) -> int:
        return self.stored.sequence

    @property
    def event(self) -> bytes:
        return self.stored.event


class Tail:
    """The newest committed events, in sequence order, within `capacity` and `max_bytes`.

    `max_bytes` bounds the sum of the encoded events' sizes. The newest event
    stays even when it alone is larger. The entries' objects and attribute
    strings take about 800 bytes per event more, measured with tracemalloc
    for the 1.4 KB events of benchmarks/workload.py.
    """

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"The tail capacity must be at least 1, not {capacity}.")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"The tail's maximum bytes must be at least 1, not {max_bytes}.")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._slots: list[TailEntry | None] = [None] * capacity
        self._first = 1
        self._last = 0
        self._bytes = 0

    @property
    def first(self) -> int:
        """The lowest sequence held; greater than `last` when the tail is empty."""
        return self._first

    @property
    def last(self) -> int:
        return self._last

    @property
    def size(self) -> int:
        """The number of events held."""
        return self._last - self._first + 1

    @property
    def bytes(self) -> int:
        """The sum of the sizes of the encoded events held."""
        return self._bytes

    def reset(self, head: int) -> None:
        """Empty the tail so that the next appended sequence is `head + 1`."""
        self._slots = [None] * self.capacity
        self._first = head + 1
        self._last = head
        self._bytes = 0

    def discard_through(self, sequence: int) -> None:
        """Drop the entries up to `sequence`, which retention removed from the log."""
        if sequence < self._first:
            return
        if sequence >= self._last:
            self.reset(self._last)
            return
        while self._first <= sequence:
            self._drop_first()

    def append(self, entry: TailEntry) -> None:
        if entry.sequence != self._last + 1:
            raise ValueError(f"The tail expected sequence {self._last + 1}, not {entry.sequence}.")
        if self.size == self.capacity:
            self._drop_first()
        self._slots[entry.sequence % self.capacity] = entry
        self._last = entry.sequence
        self._bytes += len(entry.event)
        if self.max_bytes is not None:
            while self._bytes > self.max_bytes and self._first < self._last:
                self._drop_first()

    def prepend(self, entries: Sequence[TailEntry]) -> int:
        """Add older entries that end just before `first`, as many of the newest as fit.

        Return how many were added; a full tail takes none. Raises ValueError
        unless `entries` are dense, in sequence order, and end at `first - 1`.
        """
        room = self.capacity - self.size
        if room <= 0 or not entries:
            return 0
        newest = entries[-room:]
        start = self._first - len(newest)
        for offset, entry in enumerate(newest):
            if entry.sequence != start + offset:
                raise ValueError(
                    f"The tail expected sequence {start + offset} before {self._first}, "
                    f"not {entry.sequence}."
                )
        added = 0
        for entry in reversed(newest):
            size = len(entry.event)
            over = self.max_bytes is not None and self._bytes + size > self.max_bytes
            # An empty tail takes its newest event whatever its size, as `append` does.
            if over and self.size > 0:
                break
            self._slots[entry.sequence % self.capacity] = entry
            self._first = entry.sequence
            self._bytes += size
            added += 1
        return added

    def get(self, sequence: int) -> TailEntry:
        """Return the entry with this sequence; raises KeyError when the tail does not hold it."""
        if not self._first <= sequence <= self._last:
            raise KeyError(sequence)
        entry = self._slots[sequence % self.capacity]
        assert entry is not None and entry.sequence == sequence
        return entry

    def covers(self, after: int) -> bool:
        """Return whether every event after the cursor `after` is in the tail."""
        return after >= self._first - 1

    def scan(self, after: int, last: int, filter: Matcher, limit: int) -> ScanResult:
        """Return up to `limit` events with `after < sequence <= last` matching `filter`.

        The caller checks `covers(after)` first.
        """
        end = min(last, self._last)
        if not filter:
            # Every event matches, so the page is a run of slots. Appends fill
            # the ring in sequence order: when both ends of the run hold their
            # sequences (`get` raises otherwise), every slot between does too.
            stop = max(after, min(end, after + limit))
            if stop == after:
                return ScanResult([], after)
            self.get(after + 1)
            self.get(stop)
            slots, capacity = self._slots, self.capacity
            page = [
                slots[sequence % capacity].stored  # type: ignore[union-attr]
                for sequence in range(after + 1, stop + 1)
            ]
            return ScanResult(page, stop)

        found: list[StoredEvent] = []
        view = AttributeView()
        position = after
        while position < end and len(found) < limit:
            position += 1
            entry = self.get(position)
            view.packed = entry.attributes
            if filter.matches(view):
                found.append(entry.stored)
        return ScanResult(found, position)

    def _drop_first(self) -> None:
        slot = self._first % self.capacity
        entry = self._slots[slot]
        if entry is not None:
            self._bytes -= len(entry.event)
        self._slots[slot] = None
        self._first += 1
