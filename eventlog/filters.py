"""Feed filters: attribute patterns evaluated in Python (the tail) and in SQL (history).

A filter maps attribute names to patterns. A pattern `v` matches the value `v`
exactly; `v*` matches every value that starts with `v`. Several patterns for
one attribute match any of them; different attributes must all match. An
event without the attribute never matches a pattern on it.

>>> f = Filter.parse({"type": ["order.created", "invoice.*"]})
>>> f.matches({"type": "invoice.paid"}), f.matches({"type": "order.paid"})
(True, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from eventlog.errors import InvalidFilter
from eventlog.event import CORE_ATTRIBUTES, is_attribute_name


@dataclass(frozen=True, slots=True)
class Pattern:
    """One filter value: an exact value, or a prefix when written with a trailing `*`."""

    value: str
    prefix: bool

    @classmethod
    def parse(cls, text: str) -> Pattern:
        if text.endswith("*"):
            return cls(text[:-1], True)
        return cls(text, False)

    def matches(self, value: str) -> bool:
        if self.prefix:
            return value.startswith(self.value)
        return value == self.value

    def __str__(self) -> str:
        return self.value + "*" if self.prefix else self.value


@dataclass(frozen=True, slots=True)
class Filter:
    """Attribute patterns that an event must all match; the empty filter matches everything."""

    patterns: tuple[tuple[str, tuple[Pattern, ...]], ...] = ()

    @classmethod
    def parse(cls, values: Mapping[str, Iterable[str]]) -> Filter:
        """Build a filter from attribute names and pattern texts.

        Raises `InvalidFilter` for a name that is not a CloudEvents attribute
        name, for the log's own attributes, and for an empty pattern.
        """
        patterns: list[tuple[str, tuple[Pattern, ...]]] = []
        for name in sorted(values):
            texts = list(values[name])
            _check_name(name)
            for text in texts:
                if text == "":
                    raise InvalidFilter(
                        name,
                        f"The filter on {name!r} has an empty value; give a value, or "
                        "'prefix*' to match by prefix, or leave the parameter out.",
                    )
            if texts:
                patterns.append((name, tuple(Pattern.parse(text) for text in texts)))
        return cls(tuple(patterns))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, attributes: Mapping[str, str]) -> bool:
        """Return whether an event with these canonical attribute strings passes."""
        for name, patterns in self.patterns:
            value = attributes.get(name)
            if value is None:
                return False
            if not any(pattern.matches(value) for pattern in patterns):
                return False
        return True

    def to_query(self) -> dict[str, list[str]]:
        """Return the filter as query parameters, the inverse of `parse`."""
        return {name: [str(p) for p in patterns] for name, patterns in self.patterns}

    def to_sql(self, extension_column: str = "extensions") -> tuple[str, list[str]]:
        """Return a SQL condition and its parameters for the events table.

        Core attributes are columns; extensions are entries of a MAP(VARCHAR,
        VARCHAR) column holding canonical strings; `time` is compared as the
        string the publisher sent.
        """
        if not self.patterns:
            return "TRUE", []
        clauses: list[str] = []
        parameters: list[str] = []
        for name, patterns in self.patterns:
            if name in CORE_ATTRIBUTES:
                column = name
            else:
                column = f"{extension_column}[?]"
            alternatives: list[str] = []
            for pattern in patterns:
                if column.endswith("[?]"):
                    parameters.append(name)
                alternatives.append(
                    f"starts_with({column}, ?)" if pattern.prefix else f"{column} = ?"
                )
                parameters.append(pattern.value)
            clauses.append("(" + " OR ".join(alternatives) + ")")
        return " AND ".join(clauses), parameters


def _check_name(name: str) -> None:
    if name in ("sequence", "recordedtime"):
        raise InvalidFilter(
            name,
            f"{name!r} cannot be filtered on; use 'after' for a sequence or 'since' for a time.",
        )
    if name in ("data", "data_base64"):
        raise InvalidFilter(name, f"{name!r} is event data, not an attribute, and cannot be filtered on.")
    if not is_attribute_name(name):
        raise InvalidFilter(
            name,
            f"{name!r} is not a CloudEvents attribute name (lowercase a-z and 0-9 only) "
            "nor a parameter of this endpoint.",
        )


class Matcher(Protocol):
    """What reads need of a filter: a Python test, a SQL condition, and whether it restricts."""

    def matches(self, attributes: Mapping[str, str]) -> bool: ...

    def to_sql(self, extension_column: str = "extensions") -> tuple[str, list[str]]: ...

    def __bool__(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Selection:
    """A feed's filter combined with the reader's read grants.

    An event is selected when it matches `filter` (a query filter or a
    subscription's filter) and at least one filter of `scope`; a `scope` of
    None admits every event, and an empty one none.
    """

    filter: Matcher
    scope: tuple[Filter, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.filter) or self.scope is not None

    def matches(self, attributes: Mapping[str, str]) -> bool:
        if not self.filter.matches(attributes):
            return False
        if self.scope is None:
            return True
        return any(grant.matches(attributes) for grant in self.scope)

    def to_sql(self, extension_column: str = "extensions") -> tuple[str, list[str]]:
        condition, parameters = self.filter.to_sql(extension_column)
        if self.scope is None:
            return condition, parameters
        alternatives: list[str] = []
        for grant in self.scope:
            grant_condition, grant_parameters = grant.to_sql(extension_column)
            alternatives.append(f"({grant_condition})")
            parameters = parameters + grant_parameters
        scope_condition = " OR ".join(alternatives) if alternatives else "FALSE"
        return f"({condition}) AND ({scope_condition})", parameters
