"""Schemathesis hooks for tests/test_fuzz.py.

They drop the few failures that are the documented behavior of rules that
an OpenAPI 3.1 document cannot express, keep the run from revoking its own
token, and keep long-polls short. Each exemption matches the exact problem
the server returns, so any other failure of the same check still fails the
run.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# The name of the token that `eventlog serve` creates and the run uses.
ADMIN_TOKEN_NAME = "admin"
# A held read lasts as long as `wait` (up to 60 s); the run shortens it to this.
MAX_WAIT_SECONDS = 0.5

# (method, path, problem type, text in the detail) of schema-valid requests
# that the server rejects by design.
DOCUMENTED_REJECTIONS = (
    # Parameters cannot exclude each other in OpenAPI 3.1.
    ("GET", "/events", "bad-request", "Give 'after' or 'since', not both."),
    ("GET", "/events/stream", "bad-request", "Give 'after' or 'since', not both."),
    ("GET", "/export", "bad-request", "Give 'after' or 'since', not both."),
    ("GET", "/export", "bad-request", "Give 'until_sequence' or 'until', not both."),
    # A schema cannot tell valid SQL from invalid SQL.
    ("POST", "/query", "query-rejected", ""),
    # Integers anywhere in an event, its data included, must fit in 64 bits.
    ("POST", "/events", "bad-request", "outside the 64-bit range"),
    # JSON Schema counts 3.0 and 3e0 as integers; an extension attribute
    # must be written as 3.
    ("POST", "/events", "invalid-event", "not a number with a fraction or exponent"),
    # A sequence must exist in the log, which depends on what was published.
    # JSON Schema also counts 33.0 as an integer; the server wants 33.
    ("PUT", "/subscriptions/{name}", "bad-request", "past the head of the log"),
    ("PUT", "/subscriptions/{name}", "bad-request", "must be a sequence, a whole number"),
    ("POST", "/subscriptions/{name}/ack", "bad-request", "past the head of the log"),
    ("POST", "/subscriptions/{name}/ack", "bad-request", "must be a sequence, a whole number"),
    ("POST", "/subscriptions/{name}/seek", "bad-request", "past the head of the log"),
    ("POST", "/subscriptions/{name}/seek", "bad-request", "must be a sequence, a whole number"),
)


@schemathesis.hook
def filter_path_parameters(context: Any, path_parameters: dict[str, Any]) -> bool:
    """Keep the run from revoking the token it authenticates with."""
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) != (
        "DELETE",
        "/tokens/{name}",
    ):
        return True
    return bool(path_parameters.get("name") != ADMIN_TOKEN_NAME)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Shorten a valid `wait` to MAX_WAIT_SECONDS, so that no long-poll outlasts the timeout.

    Values outside 0 to 60 stay, because the server rejects them at once.
    """
    query = case.query
    if not query or "wait" not in query:
        return case
    try:
        wait = float(query["wait"])
    except (TypeError, ValueError):
        return case
    if MAX_WAIT_SECONDS < wait <= 60:
        query["wait"] = MAX_WAIT_SECONDS
    return case


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Drop a rejected positive case whose problem is one of the documented rejections."""
    if type(failure).__name__ != "RejectedPositiveData" or response.status_code not in (400, 415):
        return True
    try:
        problem = response.json()
    except ValueError:
        return True
    if is_binary_mode_without_headers(case, problem):
        return False
    for method, path, kind, detail in DOCUMENTED_REJECTIONS:
        if (
            (case.operation.method.upper(), case.operation.path) == (method, path)
            and problem.get("type") == f"urn:eventlog:problem:{kind}"
            and detail in problem.get("detail", "")
        ):
            return False
    return True


def is_binary_mode_without_headers(case: Any, problem: dict[str, Any]) -> bool:
    """Return whether a publish got 415 for a binary-mode body sent without `ce-specversion`.

    The document lists binary mode's media type, but cannot make its
    `ce-` headers required only for that media type.
    """
    headers = {name.lower() for name in (case.headers or {})}
    return (
        (case.operation.method.upper(), case.operation.path) == ("POST", "/events")
        and problem.get("type") == "urn:eventlog:problem:unsupported-media-type"
        and "ce-specversion" not in headers
    )
