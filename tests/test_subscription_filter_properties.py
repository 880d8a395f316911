"""Property: a subscription filter selects the same events in SQL as in Python.

Random events go into a real DuckDB log through `EventLog`; random filters of
every dialect, nested, are evaluated by the storage scan (SQL) and by the
log's tail (Python), and both must equal `matches` over the events.
Attribute values come from a small alphabet, so that exact, prefix and
suffix tests often match, and attributes are often missing, so that NULL
handling matters.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import EventLog, parse_event
from eventlog.event import attribute_strings
from eventlog.filters import Filter, Selection
from eventlog.subscription_filters import SubscriptionFilter

# Attributes that filters test: core ones (required and optional) and extensions.
ATTRIBUTES = ("type", "source", "subject", "datacontenttype", "color", "region", "level")
OPTIONAL_TEXT = ("subject", "color", "region")
ALPHABET = "ab1./é"
VALUES = st.text(alphabet=ALPHABET, min_size=1, max_size=4)
LEAF_VALUES = st.text(alphabet=ALPHABET, min_size=1, max_size=3)
# A source is a URI reference and a datacontenttype a media type, so they draw from ASCII.
SOURCES = st.text(alphabet="ab1./", max_size=4).map(lambda path: "/" + path)
MEDIA_TYPES = st.sampled_from(["text/plain", "text/a.b", "application/json", "a/b1"])


@st.composite
def events(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=12))
    drawn = []
    for _ in range(count):
        event: dict[str, Any] = {
            "specversion": "1.0",
            "type": draw(VALUES),
            "source": draw(SOURCES),
        }
        for name in OPTIONAL_TEXT:
            if draw(st.booleans()):
                event[name] = draw(VALUES)
        if draw(st.booleans()):
            event["datacontenttype"] = draw(MEDIA_TYPES)
        if draw(st.booleans()):
            # Extension integers and booleans are compared as their canonical strings.
            event["level"] = draw(st.one_of(st.integers(min_value=0, max_value=11), st.booleans()))
        drawn.append(event)
    return drawn


def attribute_tests(dialect: str) -> st.SearchStrategy[dict[str, Any]]:
    values = st.dictionaries(st.sampled_from(ATTRIBUTES), LEAF_VALUES, min_size=1, max_size=2)
    return values.map(lambda mapping: {dialect: mapping})


LEAVES = st.one_of(attribute_tests("exact"), attribute_tests("prefix"), attribute_tests("suffix"))
EXPRESSIONS = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"all": items}),
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"any": items}),
        children.map(lambda child: {"not": child}),
    ),
    max_leaves=6,
)
FILTERS = st.lists(EXPRESSIONS, max_size=3)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def test_filter_sql_matches_python(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    log = loop.run_until_complete(EventLog.open(tmp_path / "events.duckdb", tail_capacity=10_000))
    ids = itertools.count()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(drawn=events(), document=FILTERS)
    def check(drawn: list[dict[str, Any]], document: list[dict[str, Any]]) -> None:
        for event in drawn:
            event["id"] = str(next(ids))
        parsed = [parse_event(event) for event in drawn]
        after = log.head
        appended = loop.run_until_complete(log.append(parsed))
        last = appended[-1].sequence
        subscription_filter = SubscriptionFilter.parse(document)
        expected = [
            appended_event.sequence
            for appended_event, event in zip(appended, parsed, strict=True)
            if subscription_filter.matches(attribute_strings(event.fields))
        ]

        in_sql = log.storage.scan(after, last, subscription_filter, 1000)
        in_tail = loop.run_until_complete(
            log.read(after=after, filter=subscription_filter, limit=1000)
        )

        assert [event.sequence for event in in_sql.events] == expected
        assert [event.sequence for event in in_tail.events if event.sequence <= last] == expected
        assert SubscriptionFilter.parse(subscription_filter.to_json()) == subscription_filter

    try:
        check()
    finally:
        loop.run_until_complete(log.close())


def test_selection_sql_matches_python(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """A subscription filter combined with read grants agrees in SQL and Python too."""
    log = loop.run_until_complete(EventLog.open(tmp_path / "events.duckdb"))
    ids = itertools.count()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        drawn=events(),
        document=FILTERS,
        grants=st.lists(
            st.dictionaries(
                st.sampled_from(ATTRIBUTES),
                st.lists(LEAF_VALUES.map(lambda value: value + "*"), min_size=1, max_size=2),
                max_size=2,
            ),
            max_size=2,
        ),
    )
    def check(
        drawn: list[dict[str, Any]], document: list[dict[str, Any]], grants: list[Any]
    ) -> None:
        for event in drawn:
            event["id"] = f"grant-{next(ids)}"
        parsed = [parse_event(event) for event in drawn]
        after = log.head
        appended = loop.run_until_complete(log.append(parsed))
        selection = Selection(
            SubscriptionFilter.parse(document), tuple(Filter.parse(grant) for grant in grants)
        )
        expected = [
            appended_event.sequence
            for appended_event, event in zip(appended, parsed, strict=True)
            if selection.matches(attribute_strings(event.fields))
        ]

        in_sql = log.storage.scan(after, appended[-1].sequence, selection, 1000)

        assert [event.sequence for event in in_sql.events] == expected

    try:
        check()
    finally:
        loop.run_until_complete(log.close())
