"""The in-memory tail: the newest events, already encoded as readers receive them.

Pages near the head and live streams are served from here without touching
the database. The tail is a ring indexed by sequence: because sequences are
dense, the event with sequence N sits in slot N modulo the capacity, and a
lookup costs O(1). It is used from the event loop's thread only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eventlog.filters import Matcher
from eventlog.storage import ScanResult, StoredEvent


@dataclass(frozen=True, slots=True)
class TailEntry:
    """One event in the tail: its filterable attributes and its encoded JSON."""

    sequence: int
    attributes: dict[str, str]
    event: bytes
    # Made once here, so that reads hand out the same object instead of a new one each.
    stored: StoredEvent = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stored", StoredEvent(self.sequence, self.event))


class Tail:
    """The newest `capacity` committed events, in sequence order."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"The tail capacity must be at least 1, not {capacity}.")
        self.capacity = capacity
        self._slots: list[TailEntry | None] = [None] * capacity
        self._first = 1
        self._last = 0

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

    def reset(self, head: int) -> None:
        """Empty the tail so that the next appended sequence is `head + 1`."""
        self._slots = [None] * self.capacity
        self._first = head + 1
        self._last = head

    def discard_through(self, sequence: int) -> None:
        """Drop the entries up to `sequence`, which retention removed from the log."""
        if sequence < self._first:
            return
        if sequence >= self._last:
            self.reset(self._last)
            return
        for removed in range(self._first, sequence + 1):
            self._slots[removed % self.capacity] = None
        self._first = sequence + 1

    def append(self, entry: TailEntry) -> None:
        if entry.sequence != self._last + 1:
            raise ValueError(
                f"The tail expected sequence {self._last + 1}, not {entry.sequence}."
            )
        self._slots[entry.sequence % self.capacity] = entry
        self._last = entry.sequence
        if self._last - self._first + 1 > self.capacity:
            self._first = self._last - self.capacity + 1

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
        for entry in newest:
            self._slots[entry.sequence % self.capacity] = entry
        self._first = start
        return len(newest)

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
        position = after
        while position < end and len(found) < limit:
            position += 1
            entry = self.get(position)
            if filter.matches(entry.attributes):
                found.append(entry.stored)
        return ScanResult(found, position)
