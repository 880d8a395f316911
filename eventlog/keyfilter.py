"""A Bloom filter of the keys in the log, so that the writer queries storage only for keys it may hold.

Every event's (source, id) hash, its key, goes into the filter before the
event is committed. A key that the filter does not contain is in no stored
event, so the duplicate check of a new event needs no query. A key that it
may contain is looked up in storage as before. The filter never forgets a
key: retention's deletes only make it answer "maybe" more often.

Probe `i` of a key sets bit `(low + i * step) % bits`, where `low` is the
key's lower 32 bits and `step` its upper bits with the lowest bit set.
Storage builds the same bitmap in SQL (`Storage.key_filter`) from the keys
it holds, as little-endian 64-bit words.
"""

from __future__ import annotations

# Probes per key and bits per key of capacity: about 0.3% false positives
# when the filter is full, and under 0.01% when it is half full.
HASHES = 8
BITS_PER_KEY = 12
# A new filter has room for twice the keys it starts with, and at least this many.
MIN_CAPACITY = 2_000_000
_MERGE_SLICE_BYTES = 1 << 20


def bits_for(keys: int) -> int:
    """Return the filter size in bits for a log of `keys` events: a multiple of 64."""
    capacity = max(MIN_CAPACITY, 2 * keys)
    return -(-capacity * BITS_PER_KEY // 64) * 64


class KeyFilter:
    """A Bloom filter of event keys: `may_contain` is False only for keys never added."""

    def __init__(self, bits: int, bitmap: bytes | None = None) -> None:
        if bits <= 0 or bits % 64:
            raise ValueError(f"A key filter needs a positive multiple of 64 bits, not {bits}.")
        if bitmap is not None and len(bitmap) != bits // 8:
            raise ValueError(f"A bitmap of {bits} bits has {bits // 8} bytes, not {len(bitmap)}.")
        self.bits = bits
        self.capacity = bits // BITS_PER_KEY
        self._bitmap = bytearray(bits // 8) if bitmap is None else bytearray(bitmap)

    @property
    def bitmap(self) -> bytes:
        """The filter's bits, as `Storage.key_filter` returns them."""
        return bytes(self._bitmap)

    def add(self, key: int) -> None:
        bitmap = self._bitmap
        bits = self.bits
        low = key & 0xFFFFFFFF
        step = (key >> 32) | 1
        for probe in range(HASHES):
            position = (low + probe * step) % bits
            bitmap[position >> 3] |= 1 << (position & 7)

    def may_contain(self, key: int) -> bool:
        bitmap = self._bitmap
        bits = self.bits
        low = key & 0xFFFFFFFF
        step = (key >> 32) | 1
        for probe in range(HASHES):
            position = (low + probe * step) % bits
            if not bitmap[position >> 3] & (1 << (position & 7)):
                return False
        return True

    def merge(self, bitmap: bytes) -> None:
        """Add every key of another filter of the same size, given as its bitmap."""
        if len(bitmap) != len(self._bitmap):
            raise ValueError(
                f"Cannot merge a bitmap of {len(bitmap)} bytes into one of {len(self._bitmap)}."
            )
        # In slices, so that the temporary integers stay small next to a bitmap of 30 MB.
        for start in range(0, len(bitmap), _MERGE_SLICE_BYTES):
            end = start + _MERGE_SLICE_BYTES
            merged = int.from_bytes(self._bitmap[start:end], "little") | int.from_bytes(
                bitmap[start:end], "little"
            )
            self._bitmap[start:end] = merged.to_bytes(len(bitmap[start:end]), "little")
