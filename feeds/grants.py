"""Principals and their grants: who may publish which events and read which feeds.

A grant is an action followed by attribute patterns in the feed filter
syntax; an event is covered by the grant when it matches every pattern.

>>> grant = Grant.parse("read subject=/party/1337 type=order.*")
>>> grant.action, grant.filter.matches({"subject": "/party/1337", "type": "order.paid"})
('read', True)

`admin` grants everything, and takes no patterns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from eventlog.errors import EventLogError, InvalidFilter
from eventlog.filters import Filter, Matcher, Selection

ACTIONS = ("publish", "read", "admin")


class InvalidGrant(EventLogError):
    """A grant's text cannot be parsed."""

    def __init__(self, text: str, message: str) -> None:
        self.text = text
        super().__init__(f"Invalid grant {text!r}: {message}")


@dataclass(frozen=True, slots=True)
class Grant:
    """One action on the events that match a filter."""

    action: str
    filter: Filter
    text: str

    @classmethod
    def parse(cls, text: str) -> Grant:
        words = text.split()
        if not words:
            raise InvalidGrant(text, "a grant starts with an action: publish, read or admin.")
        action, patterns = words[0], words[1:]
        if action not in ACTIONS:
            raise InvalidGrant(
                text, f"the action {action!r} is unknown; use publish, read or admin."
            )
        if action == "admin" and patterns:
            raise InvalidGrant(text, "'admin' covers every event and takes no patterns.")

        values: dict[str, list[str]] = {}
        for word in patterns:
            name, separator, value = word.partition("=")
            if not separator:
                raise InvalidGrant(
                    text,
                    f"{word!r} is not an attribute pattern such as 'source=https://a.example/*'.",
                )
            values.setdefault(name, []).append(value)
        try:
            filter = Filter.parse(values)
        except InvalidFilter as error:
            raise InvalidGrant(text, str(error)) from error
        return cls(action, filter, " ".join(words))

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls, and what its grants allow."""

    name: str
    grants: tuple[Grant, ...]

    @classmethod
    def with_grants(cls, name: str, texts: Iterable[str]) -> Principal:
        return cls(name, tuple(Grant.parse(text) for text in texts))

    @property
    def is_admin(self) -> bool:
        return any(grant.action == "admin" for grant in self.grants)

    def can(self, action: str) -> bool:
        """Return whether any grant allows `action` on some events."""
        return self.is_admin or any(grant.action == action for grant in self.grants)

    def may_publish(self, attributes: Mapping[str, str]) -> bool:
        if self.is_admin:
            return True
        return any(
            grant.action == "publish" and grant.filter.matches(attributes) for grant in self.grants
        )

    def read_scope(self) -> tuple[Filter, ...] | None:
        """Return the filters of the read grants, any of which admits an event; None for all."""
        if self.is_admin:
            return None
        return tuple(grant.filter for grant in self.grants if grant.action == "read")

    def selection(self, filter: Matcher) -> Selection:
        """Return what this principal receives of a feed or subscription with `filter`."""
        return Selection(filter, self.read_scope())


ANONYMOUS_ADMIN = Principal("anonymous", (Grant("admin", Filter(), "admin"),))
