"""The CloudEvent model and its validation against CloudEvents 1.0.2 (JSON format).

`parse_event` takes one decoded JSON object and returns an `Event`, or raises
`InvalidEvent` listing every problem found. `parse_batch` does the same for a
list, all or nothing. Binary-mode HTTP input is turned into the same JSON
object shape by the web layer before it reaches this module, so that every
mode is validated by one set of rules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import ciso8601
import orjson
from rfc3986_validator import validate_rfc3986

from eventlog.errors import AttributeProblem, EventTooLarge, InvalidEvent

SPECVERSION = "1.0"
REQUIRED_ATTRIBUTES = ("id", "source", "specversion", "type")
OPTIONAL_ATTRIBUTES = ("datacontenttype", "dataschema", "subject", "time")
CORE_ATTRIBUTES = REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES
DATA_MEMBERS = ("data", "data_base64")

# Attributes that the log sets on delivered events; input may not carry them.
LOG_ATTRIBUTES = ("sequence", "recordedtime")

DEFAULT_MAX_EVENT_BYTES = 64 * 1024

# CloudEvents Integer is a signed 32-bit number.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
_CORE_NAMES = frozenset(CORE_ATTRIBUTES)

# C0 and C1 control characters, DEL, and UTF-16 surrogates. The CloudEvents
# String type excludes all of them; surrogates appear in Python strings only
# when the input held an unpaired one.
_FORBIDDEN_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

# A subset of RFC 3986 absolute URIs that a regex without backtracking
# matches: `scheme:` then an authority of unreserved characters with an
# optional port and an absolute or empty path, or an absolute or rootless path
# alone, then an optional query and fragment. Percent-escapes, user
# information and IP literals are left to the full check of
# rfc3986-validator, whose one large regex costs about 4 microseconds per
# source (benchmarks/, 2-core machine). Every string this accepts is valid.
_PCHAR = r"[A-Za-z0-9._~!$&'()*+,;=:@-]"
_SIMPLE_URI = re.compile(
    rf"[A-Za-z][A-Za-z0-9+.-]*:"
    rf"(?://[A-Za-z0-9._~-]*(?::[0-9]*)?(?:/{_PCHAR}*)*"
    rf"|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?"
    rf"|{_PCHAR}+(?:/{_PCHAR}*)*"
    rf"|)"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)

# A media type per RFC 2046 and RFC 9110: type "/" subtype, then parameters.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}"
    rf"(\s*;\s*{_TOKEN}=({_TOKEN}|\"([^\"\\]|\\.)*\"))*\s*"
)


def is_attribute_name(name: str) -> bool:
    """Return whether `name` is a valid CloudEvents attribute name (a-z and 0-9 only)."""
    return name in _CORE_NAMES or _ATTRIBUTE_NAME.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class Event:
    """A validated CloudEvent, ready to append.

    `fields` is the event as a JSON object, attributes in input order, with
    `data` or `data_base64` when present and JSON nulls removed. `canonical`
    is its encoding with sorted keys: two events are identical when their
    canonical encodings are equal. The hashes and attribute strings that the
    writer, grants and filters need are computed once, at construction.
    """

    fields: dict[str, Any]
    canonical: bytes
    # A 128-bit BLAKE2b hash of `canonical`, which tells identical from conflicting duplicates.
    digest: bytes = field(init=False)
    # `event_key(source, id)`, which indexes the duplicate check.
    key: int = field(init=False)
    _attributes: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", hashlib.blake2b(self.canonical, digest_size=16).digest())
        object.__setattr__(self, "key", event_key(self.source, self.id))
        object.__setattr__(self, "_attributes", attribute_strings(self.fields))

    @property
    def id(self) -> str:
        return str(self.fields["id"])

    @property
    def source(self) -> str:
        return str(self.fields["source"])

    def attributes(self) -> dict[str, str]:
        """Return every context attribute in its canonical string form, for filters.

        The dictionary is shared by every caller: read it, never change it.
        """
        return self._attributes


def event_key(source: str, id: str) -> int:
    """Return the 63-bit hash of (source, id) that indexes the duplicate check."""
    digest = hashlib.blake2b(f"{source}\x00{id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def attribute_strings(fields: dict[str, Any]) -> dict[str, str]:
    """Return the context attributes of an event object as canonical strings.

    Booleans become "true" or "false" and integers their decimal form, as the
    CloudEvents type system defines; `data` and `data_base64` are left out.
    """
    strings: dict[str, str] = {}
    for name, value in fields.items():
        if name in DATA_MEMBERS:
            continue
        if value is True:
            strings[name] = "true"
        elif value is False:
            strings[name] = "false"
        else:
            strings[name] = str(value)
    return strings


def parse_event(
    value: Any, index: int = 0, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> Event:
    """Validate one decoded JSON value as a CloudEvent and return it as an `Event`.

    Raises `InvalidEvent` with every problem found, or `EventTooLarge`.
    """
    problems: list[AttributeProblem] = []
    event = _check_event(value, index, problems)
    if problems or event is None:
        raise InvalidEvent(problems)
    if len(event.canonical) > max_bytes:
        raise EventTooLarge(index, len(event.canonical), max_bytes)
    return event


def parse_batch(values: Any, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> list[Event]:
    """Validate a decoded JSON array of CloudEvents, all or nothing.

    Raises `InvalidEvent` naming every bad index and attribute, or
    `EventTooLarge` for the first event over the limit.
    """
    if not isinstance(values, list):
        problem = AttributeProblem(
            -1, "", f"A batch must be a JSON array of events, not {_json_type(values)}."
        )
        raise InvalidEvent([problem])

    problems: list[AttributeProblem] = []
    events: list[Event] = []
    for index, value in enumerate(values):
        event = _check_event(value, index, problems)
        if event is not None:
            events.append(event)
    if problems:
        raise InvalidEvent(problems)

    for index, event in enumerate(events):
        if len(event.canonical) > max_bytes:
            raise EventTooLarge(index, len(event.canonical), max_bytes)
    return events


def _check_event(value: Any, index: int, problems: list[AttributeProblem]) -> Event | None:
    if not isinstance(value, dict):
        problems.append(
            AttributeProblem(
                index, "", f"An event must be a JSON object, not {_json_type(value)}."
            )
        )
        return None

    before = len(problems)
    fields: dict[str, Any] = {}
    for name, member in value.items():
        if member is None:
            continue  # JSON null means the attribute is absent.
        fields[name] = member
        _check_member(name, member, index, problems)

    for name in REQUIRED_ATTRIBUTES:
        if name not in fields:
            problems.append(
                AttributeProblem(index, name, f"The required attribute {name!r} is missing.")
            )
    if "data" in fields and "data_base64" in fields:
        problems.append(
            AttributeProblem(
                index, "data_base64", "An event may carry 'data' or 'data_base64', not both."
            )
        )

    if len(problems) > before:
        return None
    try:
        canonical = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as error:
        # The attributes passed their checks, so the data is at fault: a string
        # with an unpaired surrogate, which JSON can carry but UTF-8 cannot.
        problems.append(
            AttributeProblem(index, "data", f"The data cannot be stored as UTF-8 JSON: {error}.")
        )
        return None
    return Event(fields=fields, canonical=canonical)


def _check_member(name: str, value: Any, index: int, problems: list[AttributeProblem]) -> None:
    def fail(message: str) -> None:
        problems.append(AttributeProblem(index, name, message))

    if name == "data":
        return  # Any JSON value is valid data.
    if name == "data_base64":
        _check_base64(value, fail)
        return
    if name in LOG_ATTRIBUTES:
        fail(f"The attribute {name!r} is set by the log on delivered events; remove it from input.")
        return
    if not is_attribute_name(name):
        fail(
            f"The attribute name {name!r} is invalid: names use only the lowercase "
            "letters a-z and the digits 0-9."
        )
        return

    if name in CORE_ATTRIBUTES:
        if not isinstance(value, str):
            fail(f"The attribute {name!r} must be a string, not {_json_type(value)}.")
            return
        _check_core_attribute(name, value, fail)
        return

    # Extension attributes: String, Boolean or Integer in the JSON format.
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT32_MIN <= value <= INT32_MAX:
            fail(
                f"The integer {value} is outside the CloudEvents Integer range "
                f"{INT32_MIN} to {INT32_MAX}; send it as a string."
            )
        return
    if isinstance(value, str):
        _check_string(value, fail)
        return
    fail(
        f"An extension attribute must be a string, boolean or integer, not "
        f"{_json_type(value)}; encode structured values as a string."
    )


def _check_core_attribute(name: str, value: str, fail: Any) -> None:
    if value == "":
        fail(f"The attribute {name!r} must not be empty.")
        return
    if not _check_string(value, fail):
        return

    if name == "specversion" and value != SPECVERSION:
        fail(f"The specversion {value!r} is not supported; use \"1.0\".")
    elif name == "source" and not _is_uri_reference(value):
        fail(f"The source {value!r} is not a valid URI reference (RFC 3986).")
    elif name == "dataschema" and not validate_rfc3986(value, rule="URI"):
        fail(f"The dataschema {value!r} is not an absolute URI (RFC 3986).")
    elif name == "time":
        _check_time(value, fail)
    elif name == "datacontenttype" and not _MEDIA_TYPE.fullmatch(value):
        fail(f"The datacontenttype {value!r} is not a media type such as 'application/json'.")


def _is_uri_reference(value: str) -> bool:
    """Return whether `value` is an RFC 3986 URI reference, trying a fast subset first."""
    if _SIMPLE_URI.fullmatch(value) is not None:
        return True
    return bool(validate_rfc3986(value, rule="URI_reference"))


def _check_string(value: str, fail: Any) -> bool:
    match = _FORBIDDEN_CHARACTER.search(value)
    if match is None:
        return True
    code = ord(match.group())
    kind = "an unpaired surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
    fail(f"The value contains {kind} (U+{code:04X}) at position {match.start()}.")
    return False


def _check_time(value: str, fail: Any) -> None:
    try:
        ciso8601.parse_rfc3339(value)
    except ValueError:
        # RFC 3339 allows the leap second 60 (section 5.6, time-second), but
        # ciso8601 2.x rejects it, so check the rest with second 59 instead.
        if value[17:19] == "60" and _is_rfc3339(value[:17] + "59" + value[19:]):
            return
        fail(
            f"The time {value!r} is not an RFC 3339 timestamp with an offset, "
            "such as '2024-05-01T12:00:00Z'."
        )


def _is_rfc3339(value: str) -> bool:
    try:
        ciso8601.parse_rfc3339(value)
    except ValueError:
        return False
    return True


def _check_base64(value: Any, fail: Any) -> None:
    if not isinstance(value, str):
        fail(f"'data_base64' must be a string, not {_json_type(value)}.")
        return
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        fail("'data_base64' is not valid Base64 (RFC 4648, with padding and no line breaks).")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
