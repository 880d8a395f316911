"""Properties of the log checked with hypothesis against the real server over HTTP.

Every example is independent of the ones before it: it uses ids no other
example uses, and it compares against the events it published or against
a model computed from the whole log read back.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import ciso8601
import httpx
import pytest
from conftest import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
# Attribute names with a meaning of their own; an extension may not use them.
RESERVED_NAMES = {
    "id",
    "source",
    "specversion",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "sequence",
    "recordedtime",
}
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A page loop follows at most this many `Link`s before the test gives up.
MAX_PAGES = 5_000


# Strategies for valid CloudEvents 1.0.2 in the JSON format.

# CloudEvents strings exclude control characters (category Cc) and
# surrogates (Cs); JSON cannot carry an unpaired surrogate in UTF-8 either.
attribute_text = st.text(st.characters(exclude_categories=("Cc", "Cs")))
nonempty_text = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1)
# Data strings may hold control characters: JSON escapes them.
data_text = st.text(st.characters(exclude_categories=("Cs",)))

_UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
_PATH_CHARACTER = st.one_of(
    st.sampled_from(_UNRESERVED + "!$&'()*+,;=:@"),
    st.tuples(st.sampled_from("0123456789ABCDEFabcdef"), st.sampled_from("0123456789ABCDEF")).map(
        lambda pair: "%" + pair[0] + pair[1]
    ),
)
uri_path = st.lists(st.lists(_PATH_CHARACTER, max_size=8).map("".join), max_size=4).map(
    lambda segments: "".join("/" + segment for segment in segments)
)
uri_suffix = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(_UNRESERVED + "/?=&"), max_size=10).map(lambda c: "?" + "".join(c)),
    st.lists(st.sampled_from(_UNRESERVED + "/?"), max_size=10).map(lambda c: "#" + "".join(c)),
)
absolute_uris = st.builds(
    lambda base, path, suffix: base + path + suffix,
    st.sampled_from(
        [
            "https://example.com",
            "http://orders.example.org:8080",
            "https://[2001:db8::1]",
            "urn:example:orders",
        ]
    ),
    uri_path,
    uri_suffix,
)
# A URI reference: an absolute URI, or a relative one such as "/orders/1".
uri_references = st.one_of(
    absolute_uris,
    st.builds(lambda path, suffix: "/" + path.lstrip("/") + suffix, uri_path, uri_suffix),
    st.builds(lambda path: "//host.example" + path, uri_path),
)

_TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789.+-", min_size=1, max_size=12)
media_types = st.builds(
    lambda kind, subtype, parameter: f"{kind}/{subtype}{parameter}",
    st.sampled_from(["application", "text", "image", "vnd"]),
    _TOKEN,
    st.sampled_from(["", "; charset=utf-8", ";charset=UTF-8", '; profile="a b;c"', "; a=b; c=d"]),
)


@st.composite
def rfc3339_times(draw: st.DrawFn) -> str:
    """An RFC 3339 timestamp with an offset, a fraction of any length, or a leap second."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    clock = f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    fraction = draw(
        st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9).map(lambda d: "." + d))
    )
    separator = draw(st.sampled_from("Tt"))
    if draw(st.integers(0, 9)) == 0:
        # RFC 3339 allows a leap second: the 61st second of the last minute of a UTC day.
        return f"{date}{separator}23:59:60{fraction}{draw(st.sampled_from('Zz'))}"
    offset = draw(
        st.one_of(
            st.sampled_from(["Z", "z", "+00:00", "-00:00"]),
            st.builds(
                lambda sign, hours, minutes: f"{sign}{hours:02d}:{minutes:02d}",
                st.sampled_from("+-"),
                st.integers(0, 23),
                st.integers(0, 59),
            ),
        )
    )
    return f"{date}{separator}{clock}{fraction}{offset}"


extension_names = st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
    lambda name: name not in RESERVED_NAMES
)
extension_values = st.one_of(attribute_text, st.booleans(), st.integers(-(2**31), 2**31 - 1))
# NOTE: integers beyond the 64-bit range are left out: orjson, which the
# server decodes with, reads them as floats and so changes the data.
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        data_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(data_text, children, max_size=4)
    ),
    max_leaves=12,
)


def _optional(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Absent (`...`), JSON null (which means absent), or a value."""
    return st.one_of(st.just(...), st.none(), values)


@st.composite
def cloudevents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid CloudEvent 1.0.2 as a JSON object; JSON nulls stand for absent attributes."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(nonempty_text),
        "source": draw(uri_references),
        "type": draw(nonempty_text),
    }
    optional = {
        "subject": draw(_optional(nonempty_text)),
        "time": draw(_optional(rfc3339_times())),
        "datacontenttype": draw(_optional(media_types)),
        "dataschema": draw(_optional(absolute_uris)),
    }
    event.update({name: value for name, value in optional.items() if value is not ...})
    event.update(draw(st.dictionaries(extension_names, extension_values, max_size=4)))

    payload = draw(st.sampled_from(["none", "data", "data_base64"]))
    if payload == "data":
        event["data"] = draw(json_values)
    elif payload == "data_base64":
        event["data_base64"] = base64.b64encode(draw(st.binary(max_size=64))).decode("ascii")

    # Publishers send attributes in any order.
    order = draw(st.permutations(list(event)))
    return {name: event[name] for name in order}


# Helpers shared by the properties.


def canonical(value: Any) -> str:
    """JSON with sorted keys, so that 1 and 1.0 or True and 1 compare as different."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def without_log_attributes(event: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value for name, value in event.items() if name not in ("sequence", "recordedtime")
    }


def read_feed(
    http: httpx.Client, params: list[tuple[str, str]], limit: int
) -> tuple[list[dict[str, Any]], list[int]]:
    """Page through a feed from after=0 by following `Link`; return the events and every cursor.

    Stops at the first empty page whose cursor reached the head read before the first page.
    """
    head = http.get("/health").json()["head"]
    url: str = "/events"
    query: list[tuple[str, str]] | None = [*params, ("limit", str(limit)), ("after", "0")]
    events: list[dict[str, Any]] = []
    cursors: list[int] = [0]
    for _ in range(MAX_PAGES):
        response = http.get(url, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page) <= limit
        events.extend(page)
        next_url = httpx.URL(response.links["next"]["url"])
        cursor = int(next_url.params["after"])
        cursors.append(cursor)
        if page:
            assert cursor >= int(page[-1]["sequence"]), (
                "the cursor must not be before the last event"
            )
        _check_link_repeats_query(next_url, params, limit)
        if not page and cursor >= head:
            return events, cursors
        url, query = str(next_url), None
    raise AssertionError(f"The feed {params} did not reach the head {head} in {MAX_PAGES} pages.")


def _check_link_repeats_query(url: httpx.URL, params: list[tuple[str, str]], limit: int) -> None:
    repeated = [
        (name, value) for name, value in url.params.multi_items() if name not in ("after", "limit")
    ]
    assert Counter(repeated) == Counter(params), f"the Link {url} must repeat the filters {params}"
    assert url.params["limit"] == str(limit)


def read_log(http: httpx.Client) -> list[dict[str, Any]]:
    """Read the whole log, unfiltered, and check that its sequences are dense from 1."""
    events, _ = read_feed(http, [], 1000)
    sequences = [int(event["sequence"]) for event in events]
    assert sequences == list(range(1, len(events) + 1)), "sequences must be dense from 1"
    return events


@pytest.fixture(scope="module")
def http(shared_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=60.0) as client:
        yield client


# Property 1: any valid event round-trips.


@pytest.fixture(scope="module")
def history_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of a server with a tail of one event, so that older events come from storage."""
    running = Server(tmp_path_factory.mktemp("round-trip") / "data", EVENTLOG_TAIL_CAPACITY="1")
    running.start()
    with httpx.Client(base_url=running.url, timeout=60.0) as client:
        yield client
    running.stop()


@pytest.mark.parametrize("path", ["tail", "history"])
@SETTINGS
@given(event=cloudevents(), ascii_only=st.booleans())
def test_event_round_trips(
    http: httpx.Client,
    history_client: httpx.Client,
    path: str,
    event: dict[str, Any],
    ascii_only: bool,
) -> None:
    client = http if path == "tail" else history_client
    # A suffix keeps the (source, id) of this example apart from every other one.
    event = dict(event, id=f"{event['id']}~{uuid.uuid4()}")
    body = json.dumps(event, ensure_ascii=ascii_only)

    response = client.post("/events", content=body.encode(), headers={"Content-Type": STRUCTURED})
    assert response.status_code == 201, response.text
    sequence = response.json()["sequence"]
    if path == "history":
        # The next event pushes this one out of the tail of one.
        filler = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/filler",
            "type": "filler",
        }
        assert client.post("/events", json=filler).status_code == 201

    page = client.get("/events", params={"after": sequence - 1, "limit": 1})
    assert page.status_code == 200, page.text
    [delivered] = page.json()
    assert delivered["sequence"] == str(sequence)
    ciso8601.parse_rfc3339(delivered["recordedtime"])
    expected = {name: value for name, value in event.items() if value is not None}
    assert canonical(without_log_attributes(delivered)) == canonical(expected)


# Property 2: concurrent publishers give a dense, duplicate-free log.

# An event in a concurrency plan: which identity (source, id) it has and
# which of two contents; the same identity with another variant conflicts.
Slot = tuple[int, int]
# A request: a single event, or a batch (possibly empty) of events.
Operation = tuple[str, list[Slot]]

slots = st.tuples(st.integers(0, 5), st.integers(0, 1))
operations = st.one_of(
    st.builds(lambda slot: ("single", [slot]), slots),
    st.builds(lambda batch: ("batch", batch), st.lists(slots, max_size=5)),
)
plans = st.lists(st.lists(operations, min_size=1, max_size=4), min_size=2, max_size=4)


def _plan_event(prefix: str, slot: Slot) -> dict[str, Any]:
    identity, variant = slot
    return {
        "specversion": "1.0",
        "id": f"{prefix}-{identity}",
        "source": "https://publishers.example.com/concurrency",
        "type": "concurrency.tested",
        "data": {"variant": variant},
    }


def _publish_all(
    url: str, operations: list[Operation], prefix: str, start: threading.Barrier
) -> list[httpx.Response]:
    responses = []
    with httpx.Client(base_url=url, timeout=60.0) as client:
        start.wait(timeout=30)
        for kind, batch in operations:
            events = [_plan_event(prefix, slot) for slot in batch]
            if kind == "single":
                body, content_type = json.dumps(events[0]), STRUCTURED
            else:
                body, content_type = json.dumps(events), BATCH
            responses.append(
                client.post("/events", content=body, headers={"Content-Type": content_type})
            )
    return responses


def _run_concurrently(
    url: str, plan: list[list[Operation]], prefix: str
) -> list[list[httpx.Response]]:
    start = threading.Barrier(len(plan))
    results: list[list[httpx.Response] | BaseException] = [[] for _ in plan]

    def run(index: int) -> None:
        try:
            results[index] = _publish_all(url, plan[index], prefix, start)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread.
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(plan))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a publisher did not finish in 120 s"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def _conflicts_within(batch: list[Slot]) -> bool:
    variants: dict[int, int] = {}
    for identity, variant in batch:
        if variants.setdefault(identity, variant) != variant:
            return True
    return False


@SETTINGS
@given(plan=plans)
def test_concurrent_publishers_dense_log(
    shared_server: Server, http: httpx.Client, plan: list[list[Operation]]
) -> None:
    prefix = str(uuid.uuid4())
    results = _run_concurrently(shared_server.url, plan, prefix)

    log = read_log(http)
    identities = Counter((event["source"], event["id"]) for event in log)
    assert max(identities.values(), default=0) == 1, "(source, id) must be unique in the log"
    mine = {int(e["sequence"]): e for e in log if e["id"].startswith(prefix + "-")}

    new_events = 0
    acknowledged: set[int] = set()
    for operations, responses in zip(plan, results):
        for (kind, batch), response in zip(operations, responses):
            events = [_plan_event(prefix, slot) for slot in batch]
            body = response.json()
            if response.status_code in (200, 201):
                sequences = [body["sequence"]] if kind == "single" else body["sequences"]
                assert len(sequences) == len(events)
                for sequence, event in zip(sequences, events):
                    assert sequence in mine, f"acknowledged sequence {sequence} is not in the log"
                    assert canonical(without_log_attributes(mine[sequence])) == canonical(event)
                acknowledged.update(sequences)
                if kind == "single":
                    duplicates = 1 if response.status_code == 200 else 0
                else:
                    duplicates = body["duplicates"]
                    assert (response.status_code == 200) == (duplicates == len(events)), body
                new_events += len(events) - duplicates
            elif response.status_code == 409:
                [error] = body["errors"]
                conflicting = events[error["index"]]
                stored = mine.get(body["sequence"])
                assert stored is not None, (
                    f"the 409 names sequence {body['sequence']}, not an event of this example"
                )
                assert stored["id"] == conflicting["id"]
                assert stored["data"] != conflicting["data"]
            else:
                assert response.status_code == 400, response.text
                assert _conflicts_within(batch), response.text
                assert body["type"] == "urn:eventlog:problem:invalid-event"

    assert set(mine) == acknowledged, (
        "the log contains exactly the acknowledged events of this example"
    )
    assert new_events == len(mine), "each stored event was acknowledged as new exactly once"


# Property 3: paging with any filter returns the filtered subsequence of the log.

TYPES = ["order.created", "order.paid", "invoice.created", "order"]
SOURCES = ["/shop", "/shop/eu", "https://billing.example.com"]
SUBJECTS = ["a", "ab", "b"]
RESOURCES = ["urn:r:1", "urn:r:12", "urn:x"]


@st.composite
def small_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event whose attributes come from small alphabets, so that filters hit."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.sampled_from(["1", "2", "3"])),  # Made unique by the test.
        "source": draw(st.sampled_from(SOURCES)),
        "type": draw(st.sampled_from(TYPES)),
    }
    if draw(st.booleans()):
        event["subject"] = draw(st.sampled_from(SUBJECTS))
    if draw(st.booleans()):
        event["resource"] = draw(st.sampled_from(RESOURCES))
    if draw(st.booleans()):
        event["flag"] = draw(st.booleans())
    if draw(st.booleans()):
        event["level"] = draw(st.sampled_from([1, 12, 2, -1]))
    return event


def _patterns(values: list[str]) -> st.SearchStrategy[str]:
    prefixes = sorted(
        {value[:length] + "*" for value in values for length in range(len(value) + 1)}
    )
    return st.sampled_from(values + prefixes + ["zzz"])


FILTER_PATTERNS: dict[str, st.SearchStrategy[str]] = {
    "type": _patterns(TYPES),
    "source": _patterns(SOURCES),
    "subject": _patterns(SUBJECTS),
    "resource": _patterns(RESOURCES),
    "flag": _patterns(["true", "false"]),
    "level": _patterns(["1", "12", "2", "-1"]),
}


@st.composite
def feed_filters(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Query parameters for a filter: any-of within an attribute, all-of across them."""
    names = draw(st.lists(st.sampled_from(sorted(FILTER_PATTERNS)), unique=True, max_size=3))
    params: list[tuple[str, str]] = []
    for name in names:
        values = draw(st.lists(FILTER_PATTERNS[name], min_size=1, max_size=3))
        params.extend((name, value) for value in values)
    return params


def attribute_string(value: Any) -> str:
    """The canonical string of a CloudEvents attribute value, as filters compare it."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def model_matches(event: dict[str, Any], params: list[tuple[str, str]]) -> bool:
    """The filter semantics of the contract, written independently of `eventlog.filters`."""
    patterns: dict[str, list[str]] = {}
    for name, value in params:
        patterns.setdefault(name, []).append(value)
    for name, values in patterns.items():
        if name not in event or name in ("data", "data_base64"):
            return False
        actual = attribute_string(event[name])
        if not any(
            actual.startswith(value[:-1]) if value.endswith("*") else actual == value
            for value in values
        ):
            return False
    return True


@pytest.fixture(scope="module")
def paging_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Two servers: one reads from its in-memory tail, one has a tail of 8 and reads storage."""
    root: Path = tmp_path_factory.mktemp("paging")
    servers = {
        "tail": Server(root / "tail"),
        "history": Server(root / "history", EVENTLOG_TAIL_CAPACITY="8"),
    }
    for running in servers.values():
        running.start()
    yield servers
    for running in servers.values():
        running.stop()


@pytest.mark.parametrize("path", ["tail", "history"])
@SETTINGS
@given(
    batches=st.lists(st.lists(small_events(), min_size=1, max_size=8), max_size=4),
    params=feed_filters(),
    limit=st.one_of(st.integers(1, 5), st.integers(6, 1000)),
)
def test_paging_matches_model(
    paging_servers: dict[str, Server],
    path: str,
    batches: list[list[dict[str, Any]]],
    params: list[tuple[str, str]],
    limit: int,
) -> None:
    prefix = str(uuid.uuid4())
    counter = 0
    with httpx.Client(base_url=paging_servers[path].url, timeout=60.0) as client:
        published: list[tuple[int, dict[str, Any]]] = []
        for batch in batches:
            events = []
            for event in batch:
                counter += 1
                events.append(dict(event, id=f"{prefix}-{counter}"))
            response = client.post(
                "/events", content=json.dumps(events), headers={"Content-Type": BATCH}
            )
            assert response.status_code == 201, response.text
            published.extend(zip(response.json()["sequences"], events))

        log = read_log(client)
        for sequence, event in published:
            assert canonical(without_log_attributes(log[sequence - 1])) == canonical(event)

        delivered, cursors = read_feed(client, params, limit)

    expected = [event for event in log if model_matches(event, params)]
    assert [e["sequence"] for e in delivered] == [e["sequence"] for e in expected]
    assert [canonical(e) for e in delivered] == [canonical(e) for e in expected]
    assert cursors == sorted(cursors), f"the Link cursor went backwards: {cursors}"
    assert cursors[-1] == len(log), "the last cursor is the head"
