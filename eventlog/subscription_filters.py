"""Subscription filters in the dialects of the CloudEvents Subscriptions API.

A subscription's `filters` is a list of filter expressions that must all
match. Each expression is a JSON object with exactly one member, its dialect:

- `{"exact": {"type": "order.paid"}}`: every named attribute equals its value;
- `{"prefix": {...}}` and `{"suffix": {...}}`: every named attribute starts or
  ends with its value;
- `{"all": [...]}`, `{"any": [...]}`: every one, or at least one, of a
  non-empty list of expressions matches;
- `{"not": {...}}`: the nested expression does not match.

Values are compared with the canonical string form of the attributes, case
sensitive. An event without a named attribute never matches `exact`,
`prefix` or `suffix` on it, so `not` of such a test matches. The SQL form
agrees with the Python form, because every attribute test is wrapped in
`coalesce(..., FALSE)` and never yields NULL.

>>> f = SubscriptionFilter.parse(
...     [{"prefix": {"type": "order."}}, {"not": {"exact": {"source": "/test"}}}]
... )
>>> f.matches({"type": "order.paid", "source": "/shop"})
True
>>> f.matches({"type": "order.paid", "source": "/test"})
False
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventlog.errors import InvalidFilterExpression
from eventlog.event import CORE_ATTRIBUTES, DATA_MEMBERS, LOG_ATTRIBUTES, is_attribute_name

ATTRIBUTE_DIALECTS = ("exact", "prefix", "suffix")
DIALECTS = (*ATTRIBUTE_DIALECTS, "all", "any", "not")

# Bounds on one filter, so that a request cannot make the server build a huge
# SQL condition or recurse deeply.
MAX_DEPTH = 16
MAX_TESTS = 200

_SQL_TESTS = {
    "exact": "coalesce({column} = ?, FALSE)",
    "prefix": "coalesce(starts_with({column}, ?), FALSE)",
    "suffix": "coalesce(ends_with({column}, ?), FALSE)",
}


@dataclass(frozen=True, slots=True)
class AttributeTest:
    """An `exact`, `prefix` or `suffix` expression: (attribute, value) pairs that must all match."""

    dialect: str
    values: tuple[tuple[str, str], ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        for name, expected in self.values:
            actual = attributes.get(name)
            if actual is None:
                return False
            if self.dialect == "exact":
                matched = actual == expected
            elif self.dialect == "prefix":
                matched = actual.startswith(expected)
            else:
                matched = actual.endswith(expected)
            if not matched:
                return False
        return True

    def sql(self, parameters: list[str], extension_column: str) -> str:
        tests: list[str] = []
        for name, expected in self.values:
            if name in CORE_ATTRIBUTES:
                column = name
            else:
                column = f"{extension_column}[?]"
                parameters.append(name)
            tests.append(_SQL_TESTS[self.dialect].format(column=column))
            parameters.append(expected)
        return "(" + " AND ".join(tests) + ")"

    def to_json(self) -> dict[str, Any]:
        return {self.dialect: dict(self.values)}


@dataclass(frozen=True, slots=True)
class AllOf:
    """An `all` expression: every nested expression matches."""

    expressions: tuple[Expression, ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return all(expression.matches(attributes) for expression in self.expressions)

    def sql(self, parameters: list[str], extension_column: str) -> str:
        parts = [expression.sql(parameters, extension_column) for expression in self.expressions]
        return "(" + " AND ".join(parts) + ")"

    def to_json(self) -> dict[str, Any]:
        return {"all": [expression.to_json() for expression in self.expressions]}


@dataclass(frozen=True, slots=True)
class AnyOf:
    """An `any` expression: at least one nested expression matches."""

    expressions: tuple[Expression, ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return any(expression.matches(attributes) for expression in self.expressions)

    def sql(self, parameters: list[str], extension_column: str) -> str:
        parts = [expression.sql(parameters, extension_column) for expression in self.expressions]
        return "(" + " OR ".join(parts) + ")"

    def to_json(self) -> dict[str, Any]:
        return {"any": [expression.to_json() for expression in self.expressions]}


@dataclass(frozen=True, slots=True)
class Not:
    """A `not` expression: the nested expression does not match."""

    expression: Expression

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return not self.expression.matches(attributes)

    def sql(self, parameters: list[str], extension_column: str) -> str:
        return f"(NOT {self.expression.sql(parameters, extension_column)})"

    def to_json(self) -> dict[str, Any]:
        return {"not": self.expression.to_json()}


Expression = AttributeTest | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class SubscriptionFilter:
    """A subscription's list of filter expressions, all of which must match.

    The empty list matches every event. It is a `Matcher`, so `EventLog.read`
    accepts it, alone or in a `Selection` with the reader's grants.
    """

    expressions: tuple[Expression, ...] = ()

    @classmethod
    def parse(cls, document: object, path: str = "filters") -> SubscriptionFilter:
        """Build a filter from the decoded JSON list of filter expressions.

        Raises `InvalidFilterExpression`, whose `path` (such as
        `filters[0].all[1].prefix.type`) locates the bad part, for anything
        the dialects do not define: an unknown dialect, an empty value, an
        invalid attribute name, or a value that is not a string.
        """
        if not isinstance(document, list):
            raise InvalidFilterExpression(
                path,
                f"must be a list of filter expressions such as "
                f'[{{"exact": {{"type": "order.paid"}}}}], not {_json_type(document)}.',
            )
        counter = _Counter()
        expressions = tuple(
            _parse_expression(item, f"{path}[{index}]", 1, counter)
            for index, item in enumerate(document)
        )
        return cls(expressions)

    def __bool__(self) -> bool:
        return bool(self.expressions)

    def matches(self, attributes: Mapping[str, str]) -> bool:
        """Return whether an event with these canonical attribute strings passes."""
        return all(expression.matches(attributes) for expression in self.expressions)

    def to_sql(self, extension_column: str = "extensions") -> tuple[str, list[str]]:
        """Return a SQL condition on the events table and its positional parameters.

        Values are always parameters, never part of the SQL text.
        """
        if not self.expressions:
            return "TRUE", []
        parameters: list[str] = []
        parts = [expression.sql(parameters, extension_column) for expression in self.expressions]
        return " AND ".join(parts), parameters

    def to_json(self) -> list[dict[str, Any]]:
        """Return the filter as the JSON list it was parsed from, in a normal form."""
        return [expression.to_json() for expression in self.expressions]


@dataclass(slots=True)
class _Counter:
    tests: int = 0


def _parse_expression(item: object, path: str, depth: int, counter: _Counter) -> Expression:
    if depth > MAX_DEPTH:
        raise InvalidFilterExpression(
            path, f"nests deeper than {MAX_DEPTH} levels; simplify the filter."
        )
    if not isinstance(item, dict) or len(item) != 1:
        raise InvalidFilterExpression(path, _one_dialect_message(item))

    [(dialect, value)] = item.items()
    inner = f"{path}.{dialect}"
    if dialect in ATTRIBUTE_DIALECTS:
        return _parse_attribute_test(dialect, value, inner, counter)
    if dialect in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise InvalidFilterExpression(
                inner,
                f"'{dialect}' takes a non-empty list of filter expressions, "
                f"not {_json_type(value)}.",
            )
        nested = tuple(
            _parse_expression(element, f"{inner}[{index}]", depth + 1, counter)
            for index, element in enumerate(value)
        )
        return AllOf(nested) if dialect == "all" else AnyOf(nested)
    if dialect == "not":
        return Not(_parse_expression(value, inner, depth + 1, counter))
    raise InvalidFilterExpression(
        path,
        f"the dialect {dialect!r} is not supported; use one of {', '.join(DIALECTS)}.",
    )


def _parse_attribute_test(
    dialect: str, value: object, path: str, counter: _Counter
) -> AttributeTest:
    if not isinstance(value, dict) or not value:
        raise InvalidFilterExpression(
            path,
            f"'{dialect}' takes an object of one or more attribute names and string "
            f'values, such as {{"type": "order.paid"}}, not {_json_type(value)}.',
        )
    pairs: list[tuple[str, str]] = []
    for name, expected in value.items():
        attribute_path = f"{path}.{name}" if name else path
        _check_attribute_name(name, attribute_path)
        if not isinstance(expected, str):
            raise InvalidFilterExpression(
                attribute_path,
                f"the value must be a string (write numbers and booleans as their "
                f"CloudEvents string form, such as \"42\" or \"true\"), not {_json_type(expected)}.",
            )
        if expected == "":
            raise InvalidFilterExpression(
                attribute_path,
                f"the value is empty; give the string that '{name}' must {_verb(dialect)}.",
            )
        pairs.append((name, expected))
    counter.tests += len(pairs)
    if counter.tests > MAX_TESTS:
        raise InvalidFilterExpression(
            path, f"the filter has more than {MAX_TESTS} attribute tests; simplify it."
        )
    return AttributeTest(dialect, tuple(pairs))


def _check_attribute_name(name: str, path: str) -> None:
    if name in LOG_ATTRIBUTES:
        raise InvalidFilterExpression(
            path,
            f"{name!r} is set by the log and cannot be filtered on; a subscription's cursor "
            "and 'start' select sequences and times.",
        )
    if name in DATA_MEMBERS:
        raise InvalidFilterExpression(
            path, f"{name!r} is event data, not an attribute, and cannot be filtered on."
        )
    if not is_attribute_name(name):
        raise InvalidFilterExpression(
            path,
            f"{name!r} is not a CloudEvents attribute name; names use lowercase a-z and 0-9 only.",
        )


def _one_dialect_message(item: object) -> str:
    if not isinstance(item, dict):
        return (
            f"a filter expression is an object with one dialect, such as "
            f'{{"exact": {{"type": "order.paid"}}}}, not {_json_type(item)}.'
        )
    if not item:
        return 'the filter expression is empty; give one dialect, such as {"exact": {...}}.'
    names = ", ".join(repr(name) for name in item)
    return (
        f"a filter expression has exactly one dialect, not {len(item)} ({names}); "
        "combine several with 'all' or 'any'."
    )


def _verb(dialect: str) -> str:
    return {"exact": "equal", "prefix": "start with", "suffix": "end with"}[dialect]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return "an empty object" if not value else "an object"
    return type(value).__name__
