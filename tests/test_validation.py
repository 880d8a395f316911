"""Every publish and feed-query rule of the contract, one bad request at a time.

Each test sends a request that breaks one rule to the real server and checks
that the answer is an RFC 9457 problem (`type`, `title`, `status`, `detail`;
for invalid events an `errors` list naming the index and attribute), and that
nothing was appended: the feed and the head are the same before and after.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import Server

PROBLEM = "application/problem+json"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024

ABSENT = object()


@pytest.fixture(scope="module")
def client(shared_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=30.0) as http:
        yield http


def event(**changes: Any) -> dict[str, Any]:
    """A valid event with a fresh id, with `changes` applied (`ABSENT` removes one)."""
    fields: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "https://tests.example.com/validation",
        "type": "com.example.validation",
        "time": "2024-05-01T12:00:00Z",
        "data": {"n": 1},
    }
    for name, value in changes.items():
        if value is ABSENT:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


def with_raw_value(fields: dict[str, Any], name: str, raw_json_string: bytes) -> bytes:
    """Encode `fields` with `name`'s value replaced by a raw JSON string literal.

    Lets a test send escapes such as `\\u0001` or an unpaired `\\ud800`
    exactly as bytes on the wire, which no JSON encoder would produce.
    """
    marker = "REPLACEDVALUE"
    encoded = orjson.dumps({**fields, name: marker})
    assert encoded.count(b'"' + marker.encode() + b'"') == 1
    return encoded.replace(b'"' + marker.encode() + b'"', raw_json_string)


def snapshot(client: httpx.Client) -> tuple[int, bytes]:
    """The head and the whole feed, to show that a request appended nothing."""
    head = client.get("/health").json()["head"]
    feed = client.get("/events", params={"limit": 1000})
    assert feed.status_code == 200
    return head, feed.content


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check an RFC 9457 problem response with `status`, and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM
    body = response.json()
    assert isinstance(body.get("type"), str) and body["type"], body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert body.get("status") == status, body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


def assert_names(body: dict[str, Any], *expected: tuple[int, str]) -> None:
    """Check that the problem's `errors` list names each (index, attribute) in `expected`."""
    errors = body.get("errors")
    assert isinstance(errors, list) and errors, body
    for error in errors:
        assert isinstance(error.get("index"), int), error
        assert isinstance(error.get("attribute"), str), error
        assert isinstance(error.get("message"), str) and error["message"], error
    named = {(error["index"], error["attribute"]) for error in errors}
    for pair in expected:
        assert pair in named, f"{pair} not in {sorted(named)}"


def rejected(
    client: httpx.Client,
    status: int,
    send: Callable[[], httpx.Response],
    *expected: tuple[int, str],
) -> dict[str, Any]:
    """Send a bad request; check the problem, the named errors, and that nothing was appended."""
    before = snapshot(client)
    response = send()
    body = assert_problem(response, status)
    if expected:
        assert_names(body, *expected)
    assert snapshot(client) == before
    return body


def post(
    client: httpx.Client, body: Any, content_type: str | None = STRUCTURED
) -> Callable[[], httpx.Response]:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {} if content_type is None else {"content-type": content_type}
    return lambda: client.post("/events", content=content, headers=headers)


def post_binary(
    client: httpx.Client, headers: list[tuple[str, str]], body: bytes = b""
) -> Callable[[], httpx.Response]:
    return lambda: client.post("/events", content=body, headers=headers)


def binary_headers(**changes: str | None) -> list[tuple[str, str]]:
    """`ce-` headers of a valid binary-mode event; a `None` change removes the header."""
    attributes: dict[str, str | None] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "https://tests.example.com/validation",
        "type": "com.example.validation",
    }
    attributes.update(changes)
    return [(f"ce-{name}", value) for name, value in attributes.items() if value is not None]


# --- The baseline is accepted, so every rejection below is for the one broken rule.


def test_the_valid_baseline_event_is_accepted_in_every_mode(client: httpx.Client) -> None:
    structured = client.post(
        "/events", content=orjson.dumps(event()), headers={"content-type": STRUCTURED}
    )
    batch = client.post(
        "/events", content=orjson.dumps([event(), event()]), headers={"content-type": BATCH}
    )
    plain = client.post("/events", content=orjson.dumps(event()), headers={"content-type": JSON})
    binary = client.post(
        "/events", content=b"{}", headers=[*binary_headers(), ("content-type", JSON)]
    )
    assert structured.status_code == 201, structured.text
    assert batch.status_code == 201, batch.text
    assert plain.status_code == 201, plain.text
    assert binary.status_code == 201, binary.text


# --- One event in structured mode, one broken attribute: (changes, attribute named).

REQUIRED = ("id", "source", "specversion", "type")

ATTRIBUTE_CASES: list[tuple[str, dict[str, Any], str]] = [
    *[(f"missing-{name}", {name: ABSENT}, name) for name in REQUIRED],
    *[(f"null-{name}", {name: None}, name) for name in REQUIRED],
    *[(f"empty-{name}", {name: ""}, name) for name in REQUIRED],
    ("empty-subject", {"subject": ""}, "subject"),
    ("id-integer", {"id": 123}, "id"),
    ("type-object", {"type": {"name": "x"}}, "type"),
    ("source-not-uri-reference", {"source": "not a uri"}, "source"),
    ("specversion-0.3", {"specversion": "0.3"}, "specversion"),
    ("specversion-1", {"specversion": "1"}, "specversion"),
    ("specversion-1.0.2", {"specversion": "1.0.2"}, "specversion"),
    ("specversion-padded", {"specversion": " 1.0"}, "specversion"),
    ("specversion-number", {"specversion": 1.0}, "specversion"),
    ("time-no-offset", {"time": "2024-05-01T12:00:00"}, "time"),
    ("time-date-only", {"time": "2024-05-01"}, "time"),
    ("time-garbage", {"time": "yesterday at noon"}, "time"),
    ("time-month-13", {"time": "2024-13-01T12:00:00Z"}, "time"),
    ("time-number", {"time": 1714564800}, "time"),
    ("time-empty", {"time": ""}, "time"),
    ("dataschema-relative-path", {"dataschema": "/schemas/order.json"}, "dataschema"),
    ("dataschema-relative-name", {"dataschema": "order.json"}, "dataschema"),
    ("dataschema-empty", {"dataschema": ""}, "dataschema"),
    ("datacontenttype-no-slash", {"datacontenttype": "json"}, "datacontenttype"),
    ("datacontenttype-no-subtype", {"datacontenttype": "application/"}, "datacontenttype"),
    ("datacontenttype-space", {"datacontenttype": "application json"}, "datacontenttype"),
    (
        "datacontenttype-bad-parameter",
        {"datacontenttype": "text/plain; charset"},
        "datacontenttype",
    ),
    ("datacontenttype-empty", {"datacontenttype": ""}, "datacontenttype"),
    ("extension-name-uppercase", {"Comexample": "x"}, "Comexample"),
    ("extension-name-camelcase", {"comExample": "x"}, "comExample"),
    ("extension-name-underscore", {"com_example": "x"}, "com_example"),
    ("extension-name-hyphen", {"com-example": "x"}, "com-example"),
    ("extension-name-dot", {"com.example": "x"}, "com.example"),
    ("extension-name-non-ascii", {"café": "x"}, "café"),
    ("extension-name-empty", {"": "x"}, ""),
    ("extension-value-object", {"comexample": {"a": 1}}, "comexample"),
    ("extension-value-array", {"comexample": [1, 2]}, "comexample"),
    ("extension-value-float", {"comexample": 1.5}, "comexample"),
    ("extension-value-whole-float", {"comexample": 2.0}, "comexample"),
    ("extension-value-int32-max-plus-1", {"comexample": 2**31}, "comexample"),
    ("extension-value-int32-min-minus-1", {"comexample": -(2**31) - 1}, "comexample"),
    ("extension-value-int64", {"comexample": 2**40}, "comexample"),
    ("data-and-data-base64", {"data": {"a": 1}, "data_base64": "YWJj"}, "data_base64"),
    ("data-base64-bad-character", {"data": ABSENT, "data_base64": "YW$j"}, "data_base64"),
    ("data-base64-url-alphabet", {"data": ABSENT, "data_base64": "-_-_"}, "data_base64"),
    ("data-base64-missing-padding", {"data": ABSENT, "data_base64": "YWJjZA"}, "data_base64"),
    ("data-base64-short-padding", {"data": ABSENT, "data_base64": "YWJjZA="}, "data_base64"),
    ("data-base64-padding-inside", {"data": ABSENT, "data_base64": "YQ==YWJj"}, "data_base64"),
    ("data-base64-line-break", {"data": ABSENT, "data_base64": "YWJj\nZGVm"}, "data_base64"),
    ("data-base64-number", {"data": ABSENT, "data_base64": 5}, "data_base64"),
    ("sequence-in-input", {"sequence": "1"}, "sequence"),
    ("recordedtime-in-input", {"recordedtime": "2024-05-01T12:00:00Z"}, "recordedtime"),
]


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [pytest.param(changes, attribute, id=name) for name, changes, attribute in ATTRIBUTE_CASES],
)
def test_an_invalid_attribute_is_rejected_and_named(
    client: httpx.Client, changes: dict[str, Any], attribute: str
) -> None:
    body = rejected(client, 400, post(client, event(**changes)), (0, attribute))
    assert body["type"].endswith("invalid-event")


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [
        pytest.param(changes, attribute, id=name)
        for name, changes, attribute in ATTRIBUTE_CASES[:12]
    ],
)
def test_an_invalid_attribute_is_rejected_with_plain_json_too(
    client: httpx.Client, changes: dict[str, Any], attribute: str
) -> None:
    rejected(client, 400, post(client, event(**changes), JSON), (0, attribute))


def test_every_problem_of_an_event_is_named_at_once(client: httpx.Client) -> None:
    bad = event(id=ABSENT, time="2024-05-01", Bad="x")
    rejected(client, 400, post(client, bad), (0, "id"), (0, "time"), (0, "Bad"))


# --- Control characters and unpaired surrogates, sent as raw JSON escapes.

RAW_STRING_CASES = [
    ("subject-u0001", "subject", rb'"a\u0001b"'),
    ("subject-u001f", "subject", rb'"a\u001fb"'),
    ("subject-newline", "subject", rb'"a\nb"'),
    ("subject-del-u007f", "subject", rb'"a\u007fb"'),
    ("subject-c1-u0085", "subject", rb'"a\u0085b"'),
    ("id-nul", "id", rb'"a\u0000b"'),
    ("extension-u0001", "comexample", rb'"a\u0001b"'),
    ("subject-high-surrogate", "subject", rb'"a\ud800b"'),
    ("subject-low-surrogate", "subject", rb'"a\udc00b"'),
    ("subject-reversed-pair", "subject", rb'"\udc00\ud800"'),
    ("type-trailing-high-surrogate", "type", rb'"com.example\ud800"'),
    ("extension-surrogate", "comexample", rb'"\udfff"'),
]


@pytest.mark.parametrize(
    ("attribute", "raw"),
    [pytest.param(attribute, raw, id=name) for name, attribute, raw in RAW_STRING_CASES],
)
def test_a_forbidden_character_in_an_attribute_is_rejected_and_named(
    client: httpx.Client, attribute: str, raw: bytes
) -> None:
    body = with_raw_value(event(), attribute, raw)
    rejected(client, 400, post(client, body), (0, attribute))


def test_an_unpaired_surrogate_in_a_batch_names_its_index(client: httpx.Client) -> None:
    good = orjson.dumps(event())
    bad = with_raw_value(event(), "subject", rb'"\ud800"')
    body = b"[" + good + b"," + bad + b"]"
    rejected(client, 400, post(client, body, BATCH), (1, "subject"))


def test_an_unpaired_surrogate_in_data_is_rejected(client: httpx.Client) -> None:
    body = with_raw_value(event(), "data", rb'{"text": "a\ud800b"}')
    rejected(client, 400, post(client, body), (0, "data"))


def test_a_paired_surrogate_escape_is_accepted(client: httpx.Client) -> None:
    body = with_raw_value(event(), "subject", rb'"\ud83c\udf0e"')
    response = client.post("/events", content=body, headers={"content-type": STRUCTURED})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "media_type",
    [
        'text/plain; name="a\\"b"',
        'text/plain; name="\\/"',
        'text/plain; name="x\\\\y"',
        "application/json;charset=utf-8",
    ],
)
def test_media_type_quoted_pairs_accepted(client: httpx.Client, media_type: str) -> None:
    body = orjson.dumps(event(id=str(uuid.uuid4()), datacontenttype=media_type))
    response = client.post("/events", content=body, headers={"content-type": STRUCTURED})
    assert response.status_code == 201, response.text


def test_media_type_unterminated_quote_rejected(client: httpx.Client) -> None:
    body = orjson.dumps(event(datacontenttype='text/plain; name="\\"'))
    rejected(client, 400, post(client, body), (0, "datacontenttype"))


# --- The shape of the body in each mode.


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[]", id="empty-array"),
        pytest.param(None, id="array-of-one-event"),
        pytest.param(b'"an event"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"true", id="boolean"),
        pytest.param(b"null", id="null"),
    ],
)
def test_structured_mode_takes_only_an_object(client: httpx.Client, body: bytes | None) -> None:
    content = orjson.dumps([event()]) if body is None else body
    rejected(client, 400, post(client, content), (0, ""))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="one-event-object"),
        pytest.param(b'"events"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"null", id="null"),
    ],
)
def test_batch_mode_takes_only_an_array(client: httpx.Client, body: bytes | None) -> None:
    content = orjson.dumps(event()) if body is None else body
    problem = rejected(client, 400, post(client, content, BATCH))
    assert_names(problem)
    assert all(error["attribute"] == "" for error in problem["errors"])


@pytest.mark.parametrize("content_type", [STRUCTURED, BATCH, JSON])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b"not json", id="text"),
        pytest.param(b'{"id": "1",}', id="trailing-comma"),
        pytest.param(b"{'id': '1'}", id="single-quotes"),
        pytest.param(b'{"a": 1} {"b": 2}', id="two-values"),
        pytest.param(b"NaN", id="nan"),
        pytest.param(b'{"id": "\xff"}', id="invalid-utf8"),
        pytest.param(b'\xef\xbb\xbf{"a": 1}', id="byte-order-mark"),
    ],
)
def test_a_body_that_is_not_json_is_rejected(
    client: httpx.Client, content_type: str, body: bytes
) -> None:
    problem = rejected(client, 400, post(client, body, content_type))
    assert "json" in problem["detail"].lower()


def test_a_batch_element_that_is_not_an_object_names_its_index(client: httpx.Client) -> None:
    rejected(client, 400, post(client, [event(), 5, event()], BATCH), (1, ""))


# --- Batches are all or nothing.


@pytest.mark.parametrize("content_type", [BATCH, JSON])
def test_one_bad_event_rejects_the_whole_batch(client: httpx.Client, content_type: str) -> None:
    batch = [event(), event(), event(time="2024-05-01"), event()]
    body = rejected(client, 400, post(client, batch, content_type), (2, "time"))
    assert {error["index"] for error in body["errors"]} == {2}


def test_every_bad_event_of_a_batch_is_named(client: httpx.Client) -> None:
    batch = [event(), event(type=""), event(), event(dataschema="x.json", Bad=1)]
    rejected(client, 400, post(client, batch, BATCH), (1, "type"), (3, "dataschema"), (3, "Bad"))


def test_two_different_events_with_one_identity_in_a_batch_are_rejected(
    client: httpx.Client,
) -> None:
    first = event()
    second = {**first, "type": "com.example.other"}
    body = rejected(client, 400, post(client, [event(), first, second], BATCH), (2, "id"))
    assert first["id"] in body["detail"]


# --- Size limits.


def sized_event(size: int) -> dict[str, Any]:
    """An event whose canonical encoding (sorted keys, no spaces) is exactly `size` bytes."""
    fields = event(data="")
    overhead = len(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
    fields["data"] = "x" * (size - overhead)
    assert len(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)) == size
    return fields


def test_an_event_over_the_default_maximum_gets_413(client: httpx.Client) -> None:
    body = rejected(client, 413, post(client, sized_event(DEFAULT_MAX_EVENT_BYTES + 1)), (0, ""))
    assert body["limit"] == DEFAULT_MAX_EVENT_BYTES


def test_an_event_of_exactly_the_default_maximum_is_accepted(client: httpx.Client) -> None:
    response = post(client, sized_event(DEFAULT_MAX_EVENT_BYTES))()
    assert response.status_code == 201, response.text


def test_an_oversize_event_in_a_batch_names_its_index(client: httpx.Client) -> None:
    batch = [event(), sized_event(DEFAULT_MAX_EVENT_BYTES + 1), event()]
    body = rejected(client, 413, post(client, batch, BATCH), (1, ""))
    assert body["limit"] == DEFAULT_MAX_EVENT_BYTES


def test_an_oversize_event_in_binary_mode_gets_413(client: httpx.Client) -> None:
    data = b"x" * (DEFAULT_MAX_EVENT_BYTES + 1)
    headers = [*binary_headers(), ("content-type", "text/plain")]
    rejected(client, 413, post_binary(client, headers, data), (0, ""))


def test_the_event_maximum_follows_the_environment(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", EVENTLOG_MAX_EVENT_BYTES="2048")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            small = post(http, sized_event(2048))()
            assert small.status_code == 201, small.text
            body = rejected(http, 413, post(http, sized_event(2049)), (0, ""))
            assert body["limit"] == 2048
    finally:
        server.stop()


def oversize_batch() -> bytes:
    """A batch of events each under the event maximum, together over the request maximum."""
    one = orjson.dumps(event(data="x" * 60_000))
    count = DEFAULT_MAX_REQUEST_BYTES // len(one) + 2
    return b"[" + b",".join([one] * count) + b"]"


def test_a_request_body_over_the_maximum_gets_413(client: httpx.Client) -> None:
    body = rejected(client, 413, post(client, oversize_batch(), BATCH))
    assert body["limit"] == DEFAULT_MAX_REQUEST_BYTES


def test_a_chunked_request_body_over_the_maximum_gets_413(client: httpx.Client) -> None:
    content = oversize_batch()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 1024 * 1024):
            yield content[start : start + 1024 * 1024]

    def send() -> httpx.Response:
        return client.post("/events", content=chunks(), headers={"content-type": BATCH})

    body = rejected(client, 413, send)
    assert body["limit"] == DEFAULT_MAX_REQUEST_BYTES


# --- Binary mode.


@pytest.mark.parametrize(
    ("value", "attribute"),
    [
        pytest.param("%FF", "subject", id="lone-ff"),
        pytest.param("%C3%28", "subject", id="bad-continuation"),
        pytest.param("%E2%9C", "subject", id="truncated-sequence"),
        pytest.param("%ED%A0%80", "subject", id="encoded-surrogate"),
        pytest.param("%C0%AF", "subject", id="overlong"),
    ],
)
def test_binary_mode_rejects_percent_encoding_of_invalid_utf8(
    client: httpx.Client, value: str, attribute: str
) -> None:
    headers = [*binary_headers(**{attribute: value}), ("content-type", JSON)]
    rejected(client, 400, post_binary(client, headers, b"{}"), (0, attribute))


def test_binary_mode_rejects_a_duplicated_header(client: httpx.Client) -> None:
    headers = [*binary_headers(), ("ce-subject", "a"), ("ce-subject", "b")]
    rejected(client, 400, post_binary(client, headers, b"{}"), (0, "subject"))


def test_binary_mode_rejects_a_header_duplicated_in_another_case(client: httpx.Client) -> None:
    headers = [*binary_headers(), ("CE-Subject", "a"), ("ce-subject", "a")]
    rejected(client, 400, post_binary(client, headers, b"{}"), (0, "subject"))


def test_binary_mode_rejects_a_datacontenttype_header(client: httpx.Client) -> None:
    headers = [*binary_headers(datacontenttype="application/json")]
    rejected(client, 400, post_binary(client, headers, b"{}"), (0, "datacontenttype"))


@pytest.mark.parametrize("name", ["data", "data_base64"])
def test_binary_mode_rejects_data_in_a_header(client: httpx.Client, name: str) -> None:
    headers = [*binary_headers(**{name: "YWJj"}), ("content-type", JSON)]
    rejected(client, 400, post_binary(client, headers, b"{}"), (0, name))


@pytest.mark.parametrize("name", ["id", "source", "type"])
def test_binary_mode_rejects_a_missing_required_header(client: httpx.Client, name: str) -> None:
    headers = [*binary_headers(**{name: None}), ("content-type", JSON)]
    rejected(client, 400, post_binary(client, headers, b"{}"), (0, name))


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [
        pytest.param({"specversion": "0.3"}, "specversion", id="specversion-0.3"),
        pytest.param({"id": ""}, "id", id="empty-id"),
        pytest.param({"time": "2024-05-01"}, "time", id="time-date-only"),
        pytest.param({"dataschema": "schema.json"}, "dataschema", id="dataschema-relative"),
        pytest.param({"subject": "a%01b"}, "subject", id="control-character"),
        pytest.param({"sequence": "1"}, "sequence", id="sequence"),
        pytest.param({"recordedtime": "2024-05-01T12:00:00Z"}, "recordedtime", id="recordedtime"),
        pytest.param({"com_example": "x"}, "com_example", id="extension-underscore"),
        pytest.param({"com.example": "x"}, "com.example", id="extension-dot"),
    ],
)
def test_binary_mode_applies_the_attribute_rules(
    client: httpx.Client, changes: dict[str, str], attribute: str
) -> None:
    headers = [*binary_headers(**changes), ("content-type", JSON)]
    rejected(client, 400, post_binary(client, headers, b"{}"), (0, attribute))


def test_binary_mode_rejects_a_json_content_type_with_a_body_that_is_not_json(
    client: httpx.Client,
) -> None:
    headers = [*binary_headers(), ("content-type", "application/json")]
    rejected(client, 400, post_binary(client, headers, b"{not json"), (0, "data"))


def test_binary_mode_rejects_a_bad_content_type(client: httpx.Client) -> None:
    headers = [*binary_headers(), ("content-type", "not a media type")]
    rejected(client, 400, post_binary(client, headers, b"x"), (0, "datacontenttype"))


# --- Media types.


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-content-type-no-ce-headers"),
        pytest.param({"content-type": "text/plain"}, id="text-plain"),
        pytest.param({"content-type": "application/xml"}, id="application-xml"),
        pytest.param({"content-type": "application/cloudevents+xml"}, id="cloudevents-xml"),
        pytest.param({"content-type": "multipart/form-data; boundary=x"}, id="multipart"),
        pytest.param(
            {"content-type": "text/plain", "ce-id": "1", "ce-source": "/s", "ce-type": "t"},
            id="ce-headers-without-specversion",
        ),
    ],
)
def test_an_unsupported_media_type_gets_415(client: httpx.Client, headers: dict[str, str]) -> None:
    content = orjson.dumps(event())

    def send() -> httpx.Response:
        return client.post("/events", content=content, headers=headers)

    body = rejected(client, 415, send)
    assert body["type"].endswith("unsupported-media-type")


def test_a_415_lists_the_accepted_media_types(client: httpx.Client) -> None:
    response = client.post("/events", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    accepted = {part.strip() for part in response.headers["accept-post"].split(",")}
    assert {STRUCTURED, BATCH, JSON} <= accepted


# --- source + id identify an event: 200 for the same event, 409 for a different one.


def publish(client: httpx.Client, body: Any, content_type: str = STRUCTURED) -> httpx.Response:
    return client.post(
        "/events", content=orjson.dumps(body), headers={"content-type": content_type}
    )


def test_a_different_event_with_a_stored_source_and_id_gets_409(client: httpx.Client) -> None:
    original = event()
    first = publish(client, original)
    assert first.status_code == 201, first.text
    sequence = first.json()["sequence"]

    changed = {**original, "type": "com.example.changed"}
    body = rejected(client, 409, post(client, changed), (0, "id"))
    assert body["sequence"] == sequence
    assert body["type"].endswith("duplicate-conflict")


def test_republishing_an_identical_event_returns_the_original_sequence(
    client: httpx.Client,
) -> None:
    original = event()
    first = publish(client, original)
    assert first.status_code == 201, first.text

    before = snapshot(client)
    again = publish(client, original, JSON)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert snapshot(client) == before


def test_an_identical_event_in_binary_mode_is_a_duplicate_and_a_changed_one_a_conflict(
    client: httpx.Client,
) -> None:
    headers = [*binary_headers(), ("content-type", JSON)]
    first = client.post("/events", content=b'{"n": 1}', headers=headers)
    assert first.status_code == 201, first.text
    sequence = first.json()["sequence"]

    before = snapshot(client)
    again = client.post("/events", content=b'{"n":  1}', headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == {"sequence": sequence}
    assert snapshot(client) == before

    body = rejected(client, 409, post_binary(client, headers, b'{"n": 2}'), (0, "id"))
    assert body["sequence"] == sequence


def test_a_conflict_inside_a_batch_rejects_the_whole_batch(client: httpx.Client) -> None:
    original = event()
    first = publish(client, original)
    assert first.status_code == 201, first.text
    sequence = first.json()["sequence"]

    fresh = event()
    changed = {**original, "data": {"n": 2}}
    body = rejected(client, 409, post(client, [fresh, changed], BATCH), (1, "id"))
    assert body["sequence"] == sequence

    # The new event of the rejected batch was not appended: it is new now.
    later = publish(client, fresh)
    assert later.status_code == 201, later.text


def test_a_batch_with_a_duplicate_returns_the_original_sequence_in_place(
    client: httpx.Client,
) -> None:
    original = event()
    sequence = publish(client, original).json()["sequence"]
    fresh = event()

    mixed = publish(client, [fresh, original], BATCH)
    assert mixed.status_code == 201, mixed.text
    assert mixed.json()["duplicates"] == 1
    [new_sequence, old_sequence] = mixed.json()["sequences"]
    assert old_sequence == sequence
    assert new_sequence > sequence

    before = snapshot(client)
    again = publish(client, [fresh, original], BATCH)
    assert again.status_code == 200, again.text
    assert again.json() == {"sequences": [new_sequence, sequence], "duplicates": 2}
    assert snapshot(client) == before


# --- GET /events: bad query parameters get 400 naming the parameter.

QUERY_CASES: list[tuple[str, list[tuple[str, str]], str]] = [
    ("after-not-a-number", [("after", "abc")], "after"),
    ("after-negative", [("after", "-1")], "after"),
    ("after-fraction", [("after", "1.5")], "after"),
    ("after-empty", [("after", "")], "after"),
    ("after-repeated", [("after", "1"), ("after", "2")], "after"),
    ("limit-0", [("limit", "0")], "limit"),
    ("limit-1001", [("limit", "1001")], "limit"),
    ("limit-not-a-number", [("limit", "ten")], "limit"),
    ("limit-repeated", [("limit", "5"), ("limit", "5")], "limit"),
    ("wait-61", [("wait", "61")], "wait"),
    ("wait-negative", [("wait", "-1")], "wait"),
    ("wait-nan", [("wait", "nan")], "wait"),
    ("wait-infinity", [("wait", "inf")], "wait"),
    ("wait-not-a-number", [("wait", "soon")], "wait"),
    ("after-and-since", [("after", "1"), ("since", "2024-05-01T12:00:00Z")], "since"),
    ("since-garbage", [("since", "yesterday")], "since"),
    ("since-date-only", [("since", "2024-05-01")], "since"),
    ("since-no-offset", [("since", "2024-05-01T12:00:00")], "since"),
    ("filter-empty-value", [("type", "")], "type"),
    ("filter-one-empty-value-of-two", [("type", "a"), ("type", "")], "type"),
    ("extension-filter-empty-value", [("resource", "")], "resource"),
    ("unknown-parameter", [("foo_bar", "1")], "foo_bar"),
    ("uppercase-parameter", [("Type", "a")], "Type"),
    ("filter-on-sequence", [("sequence", "1")], "sequence"),
    ("filter-on-recordedtime", [("recordedtime", "2024-05-01T12:00:00Z")], "recordedtime"),
    ("filter-on-data", [("data", "x")], "data"),
]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [pytest.param(params, parameter, id=name) for name, params, parameter in QUERY_CASES],
)
def test_a_bad_feed_query_gets_400_naming_the_parameter(
    client: httpx.Client, params: list[tuple[str, str]], parameter: str
) -> None:
    response = client.get("/events", params=params)
    body = assert_problem(response, 400)
    assert body["parameter"] == parameter


def test_publish_rejects_integer_beyond_64_bits(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url, timeout=30) as http:
        head = http.get("/health").json()["head"]
        structured = http.post(
            "/events",
            content=b'{"specversion":"1.0","id":"big-1","source":"/big","type":"t",'
            b'"data":{"n":123456789012345678901234567890}}',
            headers={"Content-Type": "application/cloudevents+json"},
        )
        binary = http.post(
            "/events",
            content=b"[18446744073709551616]",
            headers={
                "Content-Type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": "big-2",
                "ce-source": "/big",
                "ce-type": "t",
            },
        )
        assert structured.status_code == 400
        assert "123456789012345678901234567890" in structured.json()["detail"]
        assert binary.status_code == 400
        assert http.get("/health").json()["head"] == head

        kept = http.post(
            "/events",
            content=b'{"specversion":"1.0","id":"big-3","source":"/big","type":"t",'
            b'"data":{"n":18446744073709551615,"s":"123456789012345678901234567890"}}',
            headers={"Content-Type": "application/cloudevents+json"},
        )
        assert kept.status_code == 201
        [event] = http.get(
            "/events", params={"after": kept.json()["sequence"] - 1, "limit": 1}
        ).json()
        assert event["data"] == {"n": 18446744073709551615, "s": "123456789012345678901234567890"}
