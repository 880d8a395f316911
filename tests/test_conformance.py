"""Real CloudEvents in, the same attributes and data out.

(a) Every event in the Altinn samples (../shared/testdata/altinn), published
    through raw HTTP in structured, batched and plain-JSON mode, and through
    the `cloudevents` SDK in structured and binary mode.
(b) Every case of the CloudEvents conformance suite
    (../shared/testdata/cloudevents-conformance), in binary and structured
    mode, raw and through the SDK, and the HTTP requests of its feature file.
(c) Binary-mode details: percent-encoding, quoting, header case, text,
    bytes and empty bodies.

Each event is read back from GET /events and compared: the same attributes
and data, plus the log's `sequence` (the decimal string of the sequence the
publish returned) and `recordedtime` (RFC 3339).
"""

from __future__ import annotations

import base64
import json
import re
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import ciso8601
import httpx
import orjson
import pytest
import yaml
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_structured_event,
    to_binary_event,
    to_structured_event,
)
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse

from conftest import TESTDATA, Server

ALTINN = TESTDATA / "altinn"
CONFORMANCE = TESTDATA / "cloudevents-conformance"
FEATURE = CONFORMANCE / "features_http-protocol-binding.feature"

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
LOG_ATTRIBUTES = ("sequence", "recordedtime")
DATA_MEMBERS = ("data", "data_base64")

# The JSON format's rule for which datacontenttype values hold JSON data.
JSON_MEDIA_TYPE = re.compile(r"(application|text)/([a-z0-9.+-]+\+)?json(\s*;.*)?", re.IGNORECASE)

# Printable ASCII except space, '"' and '%' goes into a ce- header as it is
# (CloudEvents HTTP binding 3.1.3.2); everything else is percent-encoded UTF-8.
HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], httpx.Client]]:
    """One server per name, for the whole module.

    Each way of publishing gets its own log: the same sample sent another
    way may differ in a detail (the SDK truncates `time` to microseconds and
    adds a `time` where the sample has none), and in one log that would be a
    409 for reusing the sample's source and id.
    """
    running: dict[str, tuple[Server, httpx.Client]] = {}

    def client_for(name: str) -> httpx.Client:
        if name not in running:
            server = Server(tmp_path_factory.mktemp(name) / "data")
            server.start()
            running[name] = (server, httpx.Client(base_url=server.url, timeout=30.0))
        return running[name][1]

    yield client_for
    for server, http in running.values():
        http.close()
        server.stop()


# --- Reading back.


def read_back(client: httpx.Client, sequence: int) -> dict[str, Any]:
    """Return the delivered event at `sequence`, checking the attributes the log adds."""
    response = client.get("/events", params={"after": sequence - 1, "limit": 1})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(BATCH)
    [delivered] = response.json()
    assert delivered["sequence"] == str(sequence)
    assert is_rfc3339(delivered["recordedtime"]), delivered
    return dict(delivered)


def is_rfc3339(text: str) -> bool:
    try:
        ciso8601.parse_rfc3339(text)
    except ValueError:
        return False
    return True


def without_log_attributes(delivered: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in delivered.items() if name not in LOG_ATTRIBUTES}


def sdk_read(delivered: dict[str, Any]) -> BaseCloudEvent:
    """Parse a delivered event with the SDK, as a structured-mode HTTP message."""
    message = HTTPMessage(headers={"content-type": STRUCTURED}, body=orjson.dumps(delivered))
    return from_structured_event(message)


def sdk_attributes(event: BaseCloudEvent) -> dict[str, Any]:
    return {n: v for n, v in event.get_attributes().items() if n not in LOG_ATTRIBUTES}


def published_sequences(response: httpx.Response, count: int) -> list[int]:
    """The sequences of a successful publish of `count` events (201 new, 200 duplicate)."""
    assert response.status_code in (200, 201), response.text
    body = response.json()
    sequences = body["sequences"] if "sequences" in body else [body["sequence"]]
    assert len(sequences) == count
    return list(sequences)


def assert_round_trip(client: httpx.Client, sequence: int, sent: dict[str, Any]) -> None:
    """Check that the event at `sequence` is `sent` plus the log's two attributes.

    The JSON must be equal member for member, and the SDK must read the same
    event from it as from what was sent.
    """
    delivered = read_back(client, sequence)
    assert without_log_attributes(delivered) == sent

    received, expected = sdk_read(delivered), sdk_event(sent)
    received_attributes = sdk_attributes(received)
    expected_attributes = dict(expected.get_attributes())
    if "time" not in sent:
        # The SDK gives an event without a time the current time when it reads it.
        del received_attributes["time"], expected_attributes["time"]
    assert received_attributes == expected_attributes
    assert received.get_data() == expected.get_data()


def assert_sdk_round_trip(client: httpx.Client, sequence: int, sent: BaseCloudEvent) -> None:
    """Check with the SDK that the event at `sequence` has `sent`'s attributes and data."""
    received = sdk_read(read_back(client, sequence))
    assert received.get_attributes()["sequence"] == str(sequence)
    assert sdk_attributes(received) == sent.get_attributes()
    assert received.get_data() == sent.get_data()


def sdk_event(fields: dict[str, Any]) -> CloudEvent:
    """Build an SDK event from a JSON-format event object (the SDK wants `time` as a datetime)."""
    attributes = {n: v for n, v in fields.items() if n not in DATA_MEMBERS}
    if "time" in attributes:
        attributes["time"] = isoparse(attributes["time"])
    data: Any = fields.get("data")
    if "data_base64" in fields:
        data = base64.b64decode(fields["data_base64"])
    return CloudEvent(attributes, data)


def post_message(client: httpx.Client, message: HTTPMessage) -> httpx.Response:
    return client.post("/events", content=message.body, headers=message.headers)


# --- (a) The Altinn samples.

# Files in altinn/ that hold no event, and what they hold instead.
NOT_EVENTS = {
    "07-k6-generic-subscription.json": "a subscription request",
    "14-bruno-POST-subscription-generic.json": "a subscription request",
    "22-docs-POST-events-400-problem.json": "a problem response",
}

# Values for the templates' placeholders: 05 is a k6 template with {0} (a
# party) and {1} (an instance owner), 10 a Bruno request with variables.
PLACEHOLDERS = {"{0}": "50019855", "{1}": "1337"}


def fill_template(text: str) -> str:
    text = text.replace("{{$randomUUID}}", str(uuid.uuid4()))
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = text.replace("{{$isoTimestamp}}", now)
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


def altinn_sample(name: str) -> tuple[Any, list[dict[str, Any]]]:
    """Return a sample file's request body and its events.

    Database rows give their `cloudEvent`, documented responses their body;
    an event without an `id` (the load-test templates) gets a fresh one,
    as the load test does.
    """
    value = json.loads(fill_template((ALTINN / name).read_text()))
    if isinstance(value, dict) and "_response_body" in value:
        value = value["_response_body"]
    items = value if isinstance(value, list) else [value]
    events = [item.get("cloudEvent", item) for item in items]
    for event in events:
        assert event.get("specversion") == "1.0", f"{name} holds something other than events"
        event.setdefault("id", str(uuid.uuid4()))
    body: Any = events if isinstance(value, list) else events[0]
    return body, events


ALTINN_FILES = sorted(p.name for p in ALTINN.glob("*.json") if p.name not in NOT_EVENTS)


def test_every_altinn_sample_file_is_published_or_named_as_no_event() -> None:
    names = {p.name for p in ALTINN.glob("*.json")}
    assert set(NOT_EVENTS) <= names
    assert len(ALTINN_FILES) >= 10
    for name in NOT_EVENTS:
        assert "specversion" not in (ALTINN / name).read_text()


@pytest.mark.parametrize("name", ALTINN_FILES)
def test_altinn_events_round_trip_one_by_one_in_structured_mode(
    servers: Callable[[str], httpx.Client], name: str
) -> None:
    client = servers("altinn-structured")
    _, events = altinn_sample(name)
    for event in events:
        response = client.post(
            "/events", content=orjson.dumps(event), headers={"content-type": STRUCTURED}
        )
        [sequence] = published_sequences(response, 1)
        assert_round_trip(client, sequence, event)


@pytest.mark.parametrize("name", ALTINN_FILES)
def test_altinn_events_round_trip_as_one_batch(
    servers: Callable[[str], httpx.Client], name: str
) -> None:
    client = servers("altinn-batch")
    _, events = altinn_sample(name)
    response = client.post("/events", content=orjson.dumps(events), headers={"content-type": BATCH})
    for sequence, event in zip(published_sequences(response, len(events)), events, strict=True):
        assert_round_trip(client, sequence, event)


@pytest.mark.parametrize("name", ALTINN_FILES)
def test_altinn_samples_round_trip_as_plain_json(
    servers: Callable[[str], httpx.Client], name: str
) -> None:
    client = servers("altinn-json")
    body, events = altinn_sample(name)
    response = client.post("/events", content=orjson.dumps(body), headers={"content-type": JSON})
    for sequence, event in zip(published_sequences(response, len(events)), events, strict=True):
        assert_round_trip(client, sequence, event)


@pytest.mark.parametrize("mode", ["structured", "binary"])
@pytest.mark.parametrize("name", ALTINN_FILES)
def test_altinn_events_round_trip_through_the_sdk(
    servers: Callable[[str], httpx.Client], name: str, mode: str
) -> None:
    client = servers(f"altinn-sdk-{mode}")
    _, events = altinn_sample(name)
    for fields in events:
        sent = sdk_event(fields)
        message = to_structured_event(sent) if mode == "structured" else to_binary_event(sent)
        [sequence] = published_sequences(post_message(client, message), 1)
        assert_sdk_round_trip(client, sequence, sent)


# --- (b) The CloudEvents conformance cases.


def conformance_cases() -> list[Any]:
    """Every YAML document of the conformance folder, as a pytest param.

    Loaded with the base loader so that every scalar stays the text it is
    (`1.0` and the `time` would otherwise become a float and a datetime).
    """
    cases = []
    for path in sorted(CONFORMANCE.glob("*.yaml")):
        documents = yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
        for number, document in enumerate(documents):
            case_id = f"{path.stem}-{number}-{document['ContextAttributes']['id']}"
            cases.append(pytest.param(document, id=case_id))
    return cases


CONFORMANCE_CASES = conformance_cases()


def case_attributes(case: dict[str, Any]) -> dict[str, str]:
    """The case's context attributes and extensions as one JSON-format object.

    A block scalar (`|`) ends with a newline, which a CloudEvents String may
    not hold (it is a control character) and an HTTP header cannot carry: the
    extension `{"othervalue": 5}` is written that way for readability only.
    """
    attributes = dict(case["ContextAttributes"])
    extensions = attributes.pop("Extensions", {})
    attributes.update({name: value.rstrip("\n") for name, value in extensions.items()})
    return attributes


def is_json_data(attributes: dict[str, Any]) -> bool:
    """Whether the data is JSON: the datacontenttype says so, or is absent (JSON is implied)."""
    content_type = attributes.get("datacontenttype")
    return content_type is None or JSON_MEDIA_TYPE.fullmatch(content_type) is not None


def expected_data(case: dict[str, Any], attributes: dict[str, Any]) -> Any:
    """The case's data as the value it stands for: a JSON value, or the exact text."""
    text = case["Data"]
    return json.loads(text) if is_json_data(attributes) else text


def transport_headers(case: dict[str, Any]) -> dict[str, str]:
    return dict(case.get("TransportExtensions") or {})


def raw_binary_request(
    case: dict[str, Any], attributes: dict[str, str]
) -> tuple[dict[str, str], bytes]:
    headers = transport_headers(case)
    for name, value in attributes.items():
        if name == "datacontenttype":
            headers["content-type"] = value
        else:
            headers[f"ce-{name}"] = quote(value, safe=HEADER_SAFE)
    return headers, case["Data"].encode("utf-8")


def test_the_conformance_cases_are_found() -> None:
    assert len(CONFORMANCE_CASES) == 8


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("case", CONFORMANCE_CASES)
def test_conformance_case_round_trips_over_raw_http(
    servers: Callable[[str], httpx.Client], case: dict[str, Any], mode: str
) -> None:
    client = servers(f"conformance-raw-{mode}")
    attributes = case_attributes(case)
    data = expected_data(case, attributes)
    if mode == "binary":
        headers, body = raw_binary_request(case, attributes)
    else:
        headers = {**transport_headers(case), "content-type": STRUCTURED}
        body = orjson.dumps({**attributes, "data": data})

    [sequence] = published_sequences(client.post("/events", content=body, headers=headers), 1)

    delivered = without_log_attributes(read_back(client, sequence))
    assert {n: v for n, v in delivered.items() if n not in DATA_MEMBERS} == attributes
    assert "data_base64" not in delivered
    if is_json_data(attributes):
        assert delivered["data"] == data
    else:
        assert isinstance(delivered["data"], str)
        assert delivered["data"] == case["Data"]


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("case", CONFORMANCE_CASES)
def test_conformance_case_round_trips_through_the_sdk(
    servers: Callable[[str], httpx.Client], case: dict[str, Any], mode: str
) -> None:
    client = servers(f"conformance-sdk-{mode}")
    attributes: dict[str, Any] = case_attributes(case)
    if "time" in attributes:
        attributes["time"] = isoparse(attributes["time"])
    data = expected_data(case, attributes)
    sent_data = data
    if mode == "binary" and is_json_data(attributes) and not isinstance(data, dict):
        # The SDK writes binary-mode data that is a str as it is and any other
        # non-dict with str(): give it the JSON text, which is the body it means.
        sent_data = case["Data"]
    sent = CloudEvent(attributes, sent_data)
    message = to_binary_event(sent) if mode == "binary" else to_structured_event(sent)
    message = HTTPMessage({**transport_headers(case), **message.headers}, message.body)

    [sequence] = published_sequences(post_message(client, message), 1)

    received = sdk_read(read_back(client, sequence))
    assert received.get_attributes()["sequence"] == str(sequence)
    assert sdk_attributes(received) == sent.get_attributes()
    assert received.get_data() == data


# The feature file's Scenario Outlines: an HTTP request, the attributes a
# receiver must parse from it, its data as JSON, and an Examples table.


def feature_cases() -> list[Any]:
    text = FEATURE.read_text(encoding="utf-8")
    cases = []
    for outline in text.split("Scenario Outline:")[1:]:
        title = outline.splitlines()[0].strip()
        blocks = outline.split('"""')
        request, data = textwrap.dedent(blocks[1]).strip("\n"), textwrap.dedent(blocks[3])
        attributes_table = outline.split("Then the attributes are:")[1].split("And the data")[0]
        examples_table = outline.split("Examples:")[1]
        attributes = dict(table_rows(attributes_table)[1:])
        [header, *rows] = table_rows(examples_table)
        for row in rows:
            values = dict(zip(header, row, strict=True))
            cases.append(
                pytest.param(
                    substitute(request, values),
                    {name: substitute(value, values) for name, value in attributes.items()},
                    json.loads(data),
                    id=substitute(title, values),
                )
            )
    return cases


def table_rows(table: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.splitlines()
        if line.strip().startswith("|")
    ]


def substitute(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(f"<{name}>", value)
    return text


FEATURE_CASES = feature_cases()


def test_the_feature_cases_are_found() -> None:
    assert len(FEATURE_CASES) == 4


@pytest.mark.parametrize(("request_text", "attributes", "data"), FEATURE_CASES)
def test_feature_request_is_parsed_into_its_attributes_and_data(
    client: httpx.Client, request_text: str, attributes: dict[str, str], data: Any
) -> None:
    # A fresh log per case: the binary Examples reuse one source and id with
    # different datacontenttype values, which one log would answer with 409.
    head, _, body = request_text.partition("\n\n")
    request_line, *header_lines = head.splitlines()
    assert request_line.startswith("POST ")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines]
    # Host and Content-Length belong to the transport, which sets its own.
    headers = [(n, v) for n, v in headers if n.lower() not in ("host", "content-length")]

    response = client.post("/events", content=body.encode(), headers=headers)

    [sequence] = published_sequences(response, 1)
    delivered = without_log_attributes(read_back(client, sequence))
    assert {n: v for n, v in delivered.items() if n not in DATA_MEMBERS} == attributes
    assert delivered["data"] == data


# --- (c) Binary mode in detail.


def binary_headers(**attributes: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "https://tests.example.com/binary",
        "ce-type": "com.example.binary",
    }
    headers.update({f"ce-{name}": value for name, value in attributes.items()})
    return headers


def publish_binary(
    client: httpx.Client, headers: dict[str, str] | list[tuple[str, str]], body: bytes
) -> dict[str, Any]:
    [sequence] = published_sequences(client.post("/events", content=body, headers=headers), 1)
    return without_log_attributes(read_back(client, sequence))


@pytest.mark.parametrize(
    ("header", "attribute"),
    [
        pytest.param("%E2%9C%93", "\u2713", id="check-mark"),
        pytest.param("caf%C3%A9%20ol%C3%A9", "café olé", id="latin-and-space"),
        pytest.param("%F0%9F%8C%8E", "\U0001f30e", id="four-byte"),
        pytest.param("%e2%9c%93", "\u2713", id="lowercase-hex"),
        pytest.param("100%25", "100%", id="percent-sign"),
        pytest.param("%2541", "%41", id="decoded-exactly-once"),
        pytest.param("%22quoted%22", '"quoted"', id="encoded-quotes"),
        pytest.param("/party/50019855", "/party/50019855", id="plain-ascii"),
    ],
)
def test_binary_mode_percent_decodes_header_values_as_utf8(
    servers: Callable[[str], httpx.Client], header: str, attribute: str
) -> None:
    client = servers("binary-details")
    headers = {**binary_headers(subject=header, comexample=header), "content-type": JSON}
    delivered = publish_binary(client, headers, b"{}")
    assert delivered["subject"] == attribute
    assert delivered["comexample"] == attribute


@pytest.mark.parametrize(
    ("header", "attribute"),
    [
        pytest.param(
            '"urn:altinn:resource:app_ttd_apps-test"',
            "urn:altinn:resource:app_ttd_apps-test",
            id="quoted",
        ),
        pytest.param('"hello world"', "hello world", id="quoted-with-space"),
        pytest.param('"%E2%9C%93"', "\u2713", id="quoted-then-percent-decoded"),
        pytest.param('""', "", id="quoted-empty-extension"),
    ],
)
def test_binary_mode_unquotes_a_double_quoted_header_value(
    servers: Callable[[str], httpx.Client], header: str, attribute: str
) -> None:
    client = servers("binary-details")
    headers = {**binary_headers(resource=header), "content-type": JSON}
    delivered = publish_binary(client, headers, b"{}")
    assert delivered["resource"] == attribute


def test_binary_mode_header_names_are_case_insensitive(
    servers: Callable[[str], httpx.Client],
) -> None:
    client = servers("binary-details")
    identity = str(uuid.uuid4())
    headers = [
        ("CE-SpecVersion", "1.0"),
        ("Ce-Id", identity),
        ("cE-SoUrCe", "https://tests.example.com/binary"),
        ("CE-TYPE", "com.example.binary"),
        ("Ce-Subject", "/party/1337"),
        ("Ce-AlternativeSubject", "/person/99999900001"),
        ("Content-Type", "application/json"),
    ]
    delivered = publish_binary(client, headers, b'{"a": 1}')
    assert delivered == {
        "specversion": "1.0",
        "id": identity,
        "source": "https://tests.example.com/binary",
        "type": "com.example.binary",
        "subject": "/party/1337",
        "alternativesubject": "/person/99999900001",
        "datacontenttype": "application/json",
        "data": {"a": 1},
    }


def test_binary_mode_text_data_comes_back_as_the_same_string(
    servers: Callable[[str], httpx.Client],
) -> None:
    client = servers("binary-details")
    text = "Grüße, \U0001f30e ✓\nline two\n"
    headers = {**binary_headers(), "content-type": "text/plain; charset=utf-8"}
    delivered = publish_binary(client, headers, text.encode("utf-8"))
    assert delivered["datacontenttype"] == "text/plain; charset=utf-8"
    assert delivered["data"] == text
    assert "data_base64" not in delivered


def test_binary_mode_bytes_come_back_as_data_base64(
    servers: Callable[[str], httpx.Client],
) -> None:
    client = servers("binary-details")
    payload = bytes(range(256))
    headers = {**binary_headers(), "content-type": "application/octet-stream"}
    delivered = publish_binary(client, headers, payload)
    assert delivered["datacontenttype"] == "application/octet-stream"
    assert "data" not in delivered
    assert base64.b64decode(delivered["data_base64"], validate=True) == payload
    assert sdk_read({**delivered, "sequence": "1"}).get_data() == payload


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "text/plain"],
    ids=["no-content-type", "json", "text"],
)
def test_binary_mode_empty_body_gives_no_data(
    servers: Callable[[str], httpx.Client], content_type: str | None
) -> None:
    client = servers("binary-details")
    headers = binary_headers()
    if content_type is not None:
        headers["content-type"] = content_type
    delivered = publish_binary(client, headers, b"")
    assert "data" not in delivered
    assert "data_base64" not in delivered
    assert delivered.get("datacontenttype") == content_type


@pytest.mark.parametrize(
    ("body", "data"),
    [
        pytest.param(b'{"message": "Hello"}', {"message": "Hello"}, id="object"),
        pytest.param(b'["a", 1, null]', ["a", 1, None], id="array"),
        pytest.param(b'"text"', "text", id="string"),
        pytest.param(b"42", 42, id="number"),
    ],
)
def test_binary_mode_json_without_content_type_comes_back_as_the_same_json(
    servers: Callable[[str], httpx.Client], body: bytes, data: Any
) -> None:
    client = servers("binary-details")
    delivered = publish_binary(client, binary_headers(), body)
    assert "datacontenttype" not in delivered
    assert delivered["data"] == data


def test_binary_mode_text_without_content_type_comes_back_as_text(
    servers: Callable[[str], httpx.Client],
) -> None:
    # What the SDK sends for an event whose data is the string "data field"
    # and that has no datacontenttype (Altinn sample 09); the SDK reads such
    # a body back as that string, and so must a reader of this log.
    client = servers("binary-details")
    delivered = publish_binary(client, binary_headers(), b"data field")
    assert "datacontenttype" not in delivered
    assert delivered["data"] == "data field"


def test_binary_mode_bytes_without_content_type_come_back_as_bytes(
    servers: Callable[[str], httpx.Client],
) -> None:
    client = servers("binary-details")
    payload = b"\xff\xfe\x00binary"
    delivered = publish_binary(client, binary_headers(), payload)
    assert "datacontenttype" not in delivered
    assert base64.b64decode(delivered["data_base64"]) == payload


@pytest.mark.parametrize("mode", ["structured", "binary"])
@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        pytest.param(None, {"message": "Hello", "n": [1, 2]}, id="json-without-content-type"),
        pytest.param("application/json", {"message": "Hello"}, id="json"),
        pytest.param("text/plain; charset=utf-8", "Hello, \U0001f30e!\n", id="text"),
        pytest.param("application/octet-stream", bytes(range(256)), id="bytes"),
    ],
)
def test_sdk_data_round_trips(
    servers: Callable[[str], httpx.Client], mode: str, content_type: str | None, data: Any
) -> None:
    client = servers("binary-details")
    attributes: dict[str, Any] = {
        "type": "com.example.sdk",
        "source": "https://tests.example.com/sdk",
    }
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    sent = CloudEvent(attributes, data)
    message = to_binary_event(sent) if mode == "binary" else to_structured_event(sent)
    if mode == "binary" and content_type is None:
        assert "content-type" not in {name.lower() for name in message.headers}
    [sequence] = published_sequences(post_message(client, message), 1)
    assert_sdk_round_trip(client, sequence, sent)
