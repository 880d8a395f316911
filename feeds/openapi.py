"""`GET /openapi.json`: the OpenAPI 3.1 description of every endpoint that exists.

A test compares the paths and methods here with the application's routes,
so this document cannot drift from what the server serves.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventlog.log import MAX_PAGE_LIMIT
from feeds.pages import MAX_SEQUENCE
from feeds.settings import (
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DEFAULT_HEADER_TIMEOUT_SECONDS,
    DEFAULT_MAX_HEADER_BYTES,
)

PROBLEM = {"$ref": "#/components/schemas/Problem"}
# A sequence or cursor: the log stores them as 64-bit signed integers.
_SEQUENCE: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": MAX_SEQUENCE}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }


def _filter_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string", "minLength": 1}},
    }


_FEED_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "after",
        "in": "query",
        "description": "Cursor: return events with a sequence greater than this.",
        "schema": {**_SEQUENCE, "default": 0},
    },
    {
        "name": "since",
        "in": "query",
        "description": "RFC 3339 time: start at the first event recorded at or after it "
        "(instead of 'after').",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "limit",
        "in": "query",
        "description": "Events per page.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT, "default": 100},
    },
    {
        "name": "wait",
        "in": "query",
        "description": "Seconds to hold the request while nothing matches (long-poll).",
        "schema": {"type": "number", "minimum": 0, "maximum": 60, "default": 0},
    },
    _filter_parameter(
        "type", "Filter on type: 'v' matches exactly, 'v*' by prefix; repeat for any-of."
    ),
    _filter_parameter("source", "Filter on source, like 'type'."),
    _filter_parameter("subject", "Filter on subject, like 'type'."),
    _filter_parameter("id", "Filter on id, like 'type'."),
]

_STREAM_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "Last-Event-ID",
        "in": "header",
        "description": "Cursor to resume from, sent by EventSource on reconnect; takes "
        "precedence over 'after' and 'since'. A whole number from 0 to 9223372036854775807 "
        "in at most 19 digits.",
        # Up to 18 digits is always in range. A regular expression for the exact
        # range would be long, so the schema admits a little less than the server.
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    },
    *(parameter for parameter in _FEED_PARAMETERS if parameter["name"] not in ("limit", "wait")),
    {
        "name": "access_token",
        "in": "query",
        "description": "Bearer token for clients that cannot send an Authorization header "
        "(RFC 6750, section 2.3).",
        "schema": {"type": "string"},
    },
]

# One message of an event stream. OpenAPI 3.1 does not say how to describe
# the items of a stream. This schema describes each message, as OpenAPI 3.2's
# `itemSchema` does and as Schemathesis (4.x) reads `schema` before 3.2.
_SSE_MESSAGE: dict[str, Any] = {
    "type": "object",
    "description": "One Server-Sent Events message. 'data' is a delivered event as one line "
    "of JSON; the first message has no data and sets 'retry' and 'id' to the start cursor. "
    "No message has an 'event' field, so its type is the default, 'message'.",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/DeliveredEvent"},
        },
        "event": {"const": "message"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
_EVENT_STREAM = {"text/event-stream": {"schema": _SSE_MESSAGE}}

# A CloudEvents string: no control characters (C0, DEL, C1).
_TEXT_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
# Strict Base64 with padding, as `data_base64` must be.
_BASE64_PATTERN = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
# A media type (RFC 9110): type "/" subtype, then parameters.
_TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_PATTERN = (
    f"^{_TOKEN}/{_TOKEN}( *; *{_TOKEN}=({_TOKEN}|\"([^\"\\\\]|\\\\.)*\"))* *$"
)

_CLOUDEVENT: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvent 1.0.2 in the JSON format. Extension attributes are "
    "strings, booleans or 32-bit integers with names of a-z and 0-9. JSON null means that "
    "an attribute is absent. Strings hold no control characters, and the event's canonical "
    "JSON is at most 64 KiB by default (larger gets 413).",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1, "pattern": _TEXT_PATTERN},
        "source": {"type": "string", "minLength": 1, "format": "uri-reference"},
        "type": {"type": "string", "minLength": 1, "pattern": _TEXT_PATTERN},
        "subject": {"type": ["string", "null"], "minLength": 1, "pattern": _TEXT_PATTERN},
        "time": {"type": ["string", "null"], "format": "date-time"},
        "datacontenttype": {
            "type": ["string", "null"],
            "allOf": [{"pattern": _MEDIA_TYPE_PATTERN}, {"pattern": _TEXT_PATTERN}],
        },
        "dataschema": {"type": ["string", "null"], "format": "uri"},
        "data": {},
        "data_base64": {"type": ["string", "null"], "pattern": _BASE64_PATTERN},
    },
    "propertyNames": {"pattern": "^([a-z0-9]+|data_base64)$"},
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "pattern": _TEXT_PATTERN},
            {"type": "boolean"},
            {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
            {"type": "null"},
        ]
    },
    # `data` and `data_base64` are never both present (null counts as absent).
    "not": {
        "required": ["data", "data_base64"],
        "properties": {"data": {"not": {"type": "null"}}, "data_base64": {"type": "string"}},
    },
}

# An event as publishers send it: the log sets `sequence` and `recordedtime`.
_PUBLISHED_EVENT: dict[str, Any] = {
    "allOf": [{"$ref": "#/components/schemas/CloudEvent"}],
    "propertyNames": {"not": {"enum": ["sequence", "recordedtime"]}},
}

_DELIVERED_EVENT: dict[str, Any] = {
    "allOf": [{"$ref": "#/components/schemas/CloudEvent"}],
    "type": "object",
    "required": ["sequence", "recordedtime"],
    "properties": {
        "sequence": {"type": "string", "pattern": "^[1-9][0-9]*$"},
        "recordedtime": {"type": "string", "format": "date-time"},
    },
}

_PROBLEM: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "attribute", "message"],
                "properties": {
                    "index": {"type": "integer"},
                    "attribute": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}

_EVENT_BODIES = {
    "application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/PublishedEvent"}},
    "application/cloudevents-batch+json": {
        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/PublishedEvent"}}
    },
    "application/json": {
        "schema": {
            "oneOf": [
                {"$ref": "#/components/schemas/PublishedEvent"},
                {"type": "array", "items": {"$ref": "#/components/schemas/PublishedEvent"}},
            ]
        }
    },
    # Binary mode takes any other media type, with the attributes in `ce-` headers.
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}

_PUBLISHED = {
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["sequence"],
                        "properties": {"sequence": {"type": "integer", "minimum": 1}},
                    },
                    {
                        "type": "object",
                        "required": ["sequences", "duplicates"],
                        "properties": {
                            "sequences": {"type": "array", "items": {"type": "integer"}},
                            "duplicates": {"type": "integer", "minimum": 0},
                        },
                    },
                ]
            }
        }
    }
}

_LINK_HEADER = {
    "Link": {
        "description": "The next page: '<url>; rel=\"next\"', with the same filters and a "
        "cursor that never goes backwards.",
        "schema": {"type": "string"},
    }
}

# A grant: an action, then attribute patterns `name=value` separated by
# whitespace; `admin` takes none, and the log's own attributes and `data`
# cannot be filtered on. Characters that Python's str.split() treats as
# whitespace separate words, so a value excludes them all.
_WORD = "[^\\s\\u001c-\\u001f\\u0085\\ufeff]+"
_GRANT = {
    "type": "string",
    "description": "An action and attribute patterns, such as "
    "'publish source=https://orders.example.com/*'; see the filters of GET /events.",
    "pattern": (
        "^\\s*(admin|(publish|read)"
        f"(\\s+(?!(sequence|recordedtime|data)=)[a-z0-9]+={_WORD})*)\\s*$"
    ),
}

_SUBSCRIPTION_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The subscription's name: 1 to 64 letters, digits, '.', '_' or '-'.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
}

_SUBSCRIPTION_ANSWER = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscription"}}}
}

_SUBSCRIPTION_ACCESS = {
    "401": _problem("No token, or an unknown one."),
    "403": _problem("No read grant, or the subscription belongs to another principal."),
    "404": _problem("No subscription has this name."),
}

_POSITION_BODY = {
    "type": "object",
    "properties": {
        "sequence": {**_SEQUENCE},
        "time": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["sequence"]}, {"required": ["time"]}],
}

_SUBSCRIPTION_PATHS: dict[str, Any] = {
    "/subscriptions/{name}": {
        "parameters": [_SUBSCRIPTION_NAME],
        "put": {
            "summary": "Create a subscription, or replace the filter of one's own.",
            "operationId": "putSubscription",
            "security": [{"bearer": []}],
            "description": "'start' is 'beginning', 'now' (the default for a new "
            "subscription), a cursor (the events after it come next) or an RFC 3339 time "
            "(the events recorded at or after it come next). A replacement keeps its cursor "
            "unless 'start' is given, and ends the subscription's open streams.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "filters": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/FilterExpression"},
                                },
                                "start": {
                                    "oneOf": [
                                        {"enum": ["beginning", "now"]},
                                        {**_SEQUENCE},
                                        {"type": "string", "format": "date-time"},
                                    ]
                                },
                            },
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "201": {"description": "Created.", **_SUBSCRIPTION_ANSWER},
                "200": {"description": "Replaced.", **_SUBSCRIPTION_ANSWER},
                "400": _problem("The body, a filter (its 'path' names the bad part) or "
                                "'start' is invalid."),
                "401": _problem("No token, or an unknown one."),
                "403": _problem("No read grant, or the name belongs to another principal."),
                "410": _problem("'start' is older than the retention horizon."),
            },
        },
        "get": {
            "summary": "The subscription's filter and cursor, the head, and the lag.",
            "operationId": "getSubscription",
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "The subscription.", **_SUBSCRIPTION_ANSWER},
                "400": _problem("The name is not a valid subscription name."),
                **_SUBSCRIPTION_ACCESS,
            },
        },
        "delete": {
            "summary": "Delete the subscription; its open streams end.",
            "operationId": "deleteSubscription",
            "security": [{"bearer": []}],
            "responses": {
                "204": {"description": "Deleted."},
                "400": _problem("The name is not a valid subscription name."),
                **_SUBSCRIPTION_ACCESS,
            },
        },
    },
    "/subscriptions/{name}/events": {
        "get": {
            "summary": "Read the next page after the stored cursor; the cursor does not move.",
            "operationId": "readSubscription",
            "security": [{"bearer": []}],
            "description": "The format and the Link header are those of GET /events. The "
            "link's 'after' is the position to acknowledge once the page is processed. "
            "Only the events that the caller's read grants admit are returned.",
            "parameters": [
                _SUBSCRIPTION_NAME,
                *(p for p in _FEED_PARAMETERS if p["name"] in ("after", "limit", "wait")),
            ],
            "responses": {
                "200": {
                    "description": "Events in sequence order.",
                    "headers": _LINK_HEADER,
                    "content": {
                        "application/cloudevents-batch+json": {
                            "schema": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/DeliveredEvent"},
                            }
                        }
                    },
                },
                "400": _problem("A parameter is invalid."),
                **_SUBSCRIPTION_ACCESS,
                "410": _problem("The cursor is older than the retention horizon."),
            },
        }
    },
    "/subscriptions/{name}/stream": {
        "get": {
            "summary": "Follow the subscription as Server-Sent Events from its stored cursor.",
            "operationId": "streamSubscription",
            "security": [{"bearer": []}],
            "description": "Starts after Last-Event-ID, else after the stored cursor; the "
            "messages are those of /events/stream. The stream does not move the cursor and "
            "ends when the subscription is deleted or replaced.",
            "parameters": [
                _SUBSCRIPTION_NAME,
                *(
                    p
                    for p in _STREAM_PARAMETERS
                    if p["name"] in ("Last-Event-ID", "access_token")
                ),
            ],
            "responses": {
                "200": {
                    "description": "A stream of events in sequence order.",
                    "content": _EVENT_STREAM,
                },
                "400": _problem("A parameter or the Last-Event-ID header is invalid."),
                **_SUBSCRIPTION_ACCESS,
                "410": _problem("The cursor is older than the retention horizon."),
            },
        }
    },
    "/subscriptions/{name}/ack": {
        "post": {
            "summary": "Acknowledge: the cursor becomes max(cursor, sequence).",
            "operationId": "acknowledgeSubscription",
            "security": [{"bearer": []}],
            "parameters": [_SUBSCRIPTION_NAME],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["sequence"],
                            "properties": {"sequence": {**_SEQUENCE}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "The cursor is stored.", **_SUBSCRIPTION_ANSWER},
                "400": _problem("The sequence is invalid or past the head."),
                **_SUBSCRIPTION_ACCESS,
            },
        }
    },
    "/subscriptions/{name}/seek": {
        "post": {
            "summary": "Move the cursor anywhere, to a sequence or to a time, for replay.",
            "operationId": "seekSubscription",
            "security": [{"bearer": []}],
            "description": "Give exactly one of 'sequence' (the new cursor) and 'time' (the "
            "cursor moves before the first event recorded at or after it).",
            "parameters": [_SUBSCRIPTION_NAME],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _POSITION_BODY}},
            },
            "responses": {
                "200": {"description": "The cursor is stored.", **_SUBSCRIPTION_ANSWER},
                "400": _problem("The position is invalid or past the head."),
                **_SUBSCRIPTION_ACCESS,
                "410": _problem("The position is older than the retention horizon."),
            },
        }
    },
}

_HISTORY_PATHS: dict[str, Any] = {
    "/query": {
        "post": {
            "summary": "Run one read-only SQL query over the views 'events' and 'audit' (admin).",
            "operationId": "query",
            "security": [{"bearer": []}],
            "description": "'events' has one row per event, archived or live: sequence, "
            "recordedtime, the core attributes, extensions (MAP), data (JSON), data_base64 "
            "and event (JSON). The SQL can read no file and reach no network, runs under a "
            "time limit and returns at most 10,000 rows; the Eventlog-Truncated header and "
            "the 'truncated' member say whether rows were cut off. Accept chooses JSON, CSV "
            "or Parquet.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["sql"],
                            "properties": {"sql": {"type": "string", "minLength": 1}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "The rows, at most the row cap.",
                    "headers": {
                        "Eventlog-Truncated": {
                            "description": "'true' when the query returned more rows than "
                            "the cap.",
                            "schema": {"enum": ["true", "false"]},
                        },
                        "Eventlog-Max-Rows": {
                            "description": "The row cap.",
                            "schema": {"type": "integer"},
                        },
                    },
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/QueryResult"}
                        },
                        "text/csv": {"schema": {"type": "string"}},
                        "application/vnd.apache.parquet": {
                            "schema": {"type": "string", "contentEncoding": "binary"}
                        },
                    },
                },
                "400": _problem("Not a single SELECT, or DuckDB cannot run it (its message)."),
                "401": _problem("No token, or an unknown one."),
                "403": _problem("The token is not an admin's."),
                "406": _problem("Accept admits none of JSON, CSV and Parquet."),
                "408": _problem("The query ran longer than the time limit and was stopped."),
            },
        }
    },
    "/export": {
        "get": {
            "summary": "Stream a range of events, archived or live, as Arrow IPC (admin).",
            "operationId": "exportEvents",
            "security": [{"bearer": []}],
            "description": "The range starts after 'after' or at 'since', and ends with "
            "'until_sequence' or before 'until'. The columns are those of the archive's "
            "Parquet files. A body that ends without the Arrow end-of-stream marker is "
            "incomplete.",
            "parameters": [
                {
                    "name": "after",
                    "in": "query",
                    "description": "Cursor: export the events after this sequence.",
                    "schema": {**_SEQUENCE, "default": 0},
                },
                {
                    "name": "until_sequence",
                    "in": "query",
                    "description": "The last sequence to export; default the head.",
                    "schema": {**_SEQUENCE},
                },
                {
                    "name": "since",
                    "in": "query",
                    "description": "Export from the first event recorded at or after this time.",
                    "schema": {"type": "string", "format": "date-time"},
                },
                {
                    "name": "until",
                    "in": "query",
                    "description": "Export the events recorded before this time.",
                    "schema": {"type": "string", "format": "date-time"},
                },
            ],
            "responses": {
                "200": {
                    "description": "An Arrow IPC stream.",
                    "headers": {
                        "Eventlog-First-Sequence": {
                            "description": "The first sequence of the range.",
                            "schema": {"type": "integer"},
                        },
                        "Eventlog-Last-Sequence": {
                            "description": "The last sequence of the range; below the "
                            "first when the range is empty.",
                            "schema": {"type": "integer"},
                        },
                    },
                    "content": {
                        "application/vnd.apache.arrow.stream": {
                            "schema": {"type": "string", "contentEncoding": "binary"}
                        }
                    },
                },
                "400": _problem("A parameter is invalid."),
                "401": _problem("No token, or an unknown one."),
                "403": _problem("The token is not an admin's."),
            },
        }
    },
}

_FILTER_EXPRESSION: dict[str, Any] = {
    "description": "A filter expression of the CloudEvents Subscriptions API: exactly one "
    "dialect. exact, prefix and suffix map attribute names to non-empty strings; all and "
    "any take a non-empty list; not takes one expression.",
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {
        "exact": {"$ref": "#/components/schemas/AttributeValues"},
        "prefix": {"$ref": "#/components/schemas/AttributeValues"},
        "suffix": {"$ref": "#/components/schemas/AttributeValues"},
        "all": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/components/schemas/FilterExpression"},
        },
        "any": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/components/schemas/FilterExpression"},
        },
        "not": {"$ref": "#/components/schemas/FilterExpression"},
    },
    "additionalProperties": False,
}

_HISTORY_SCHEMAS: dict[str, Any] = {
    "FilterExpression": _FILTER_EXPRESSION,
    "AttributeValues": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": "^[a-z0-9]+$"},
        "additionalProperties": {"type": "string", "minLength": 1},
    },
    "Subscription": {
        "type": "object",
        "required": ["name", "owner", "filters", "cursor", "head", "lag", "expired"],
        "properties": {
            "name": {"type": "string"},
            "owner": {"type": "string"},
            "filters": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/FilterExpression"},
            },
            "cursor": {"type": "integer", "minimum": 0},
            "head": {"type": "integer", "minimum": 0},
            "lag": {"type": "integer", "minimum": 0, "description": "head - cursor"},
            "earliest": {"type": "integer", "minimum": 1},
            "expired": {
                "type": "boolean",
                "description": "True when the cursor is older than the retention horizon; "
                "reads then get 410 until a seek.",
            },
            "created": {"type": "string", "format": "date-time"},
            "updated": {"type": "string", "format": "date-time"},
        },
    },
    "QueryResult": {
        "type": "object",
        "required": ["columns", "types", "rows", "truncated", "max_rows"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "types": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "array"}},
            "truncated": {"type": "boolean"},
            "max_rows": {"type": "integer"},
        },
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "eventlog",
        "version": "0.1.0",
        "description": "A durable, totally ordered log of CloudEvents with pull feeds. "
        "Any request can also get a problem response from the HTTP layer, before it "
        "reaches an operation: 431 for a request line plus headers over the server's limit "
        f"({DEFAULT_MAX_HEADER_BYTES} bytes by default), 414 when the request line alone is "
        "that long, and 408 when the request line and headers are not complete within the "
        f"header timeout ({DEFAULT_HEADER_TIMEOUT_SECONDS:g} s by default) or a body pauses "
        f"longer than the body timeout ({DEFAULT_BODY_TIMEOUT_SECONDS:g} s by default).",
    },
    "paths": {
        "/events": {
            "post": {
                "security": [{"bearer": []}],
                "summary": "Publish one event or a batch; answered after the commit to disk.",
                "operationId": "publishEvents",
                "requestBody": {
                    "required": True,
                    "description": "Structured or batched CloudEvents as JSON, or binary mode "
                    "(any other media type): the body is the event's data, the attributes are "
                    "'ce-' headers (ce-specversion required), and Content-Type is "
                    "datacontenttype.",
                    "content": _EVENT_BODIES,
                },
                "responses": {
                    "201": {"description": "Appended; new sequences.", **_PUBLISHED},
                    "200": {"description": "Every event was already in the log.", **_PUBLISHED},
                    "400": _problem(
                        "An event is invalid; 'errors' names each index and attribute."
                    ),
                    "401": _problem("No token, or an unknown one."),
                    "403": _problem("No publish grant covers an event; 'errors' names each index."),
                    "409": _problem("A (source, id) is stored with different content."),
                    "413": _problem("An event or the request is too large."),
                    "415": _problem("The Content-Type is not a publishing mode."),
                    "503": _problem("The log cannot commit; retry after 'Retry-After' seconds."),
                },
            },
            "get": {
                "security": [{"bearer": []}],
                "summary": "Read a page of the feed after a cursor.",
                "operationId": "readEvents",
                "description": "Any other parameter named like an extension attribute "
                "(a-z, 0-9) filters on that attribute.",
                "parameters": _FEED_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "Events in sequence order.",
                        "headers": _LINK_HEADER,
                        "content": {
                            "application/cloudevents-batch+json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/DeliveredEvent"},
                                }
                            }
                        },
                    },
                    "400": _problem("A parameter is invalid."),
                    "401": _problem("No token, or an unknown one."),
                    "403": _problem("The token has no read grant."),
                    "410": _problem("The cursor is older than the retention horizon."),
                },
            },
        },
        "/events/stream": {
            "get": {
                "summary": "Follow the feed as Server-Sent Events: history first, then live.",
                "operationId": "streamEvents",
                "description": "Starts after Last-Event-ID, else 'after' or 'since', else at "
                "the head (only new events). Each event is one message with 'id: <sequence>' "
                "and 'data: <the event as one line of JSON>', without an 'event:' field. The "
                "first message sets 'retry:' and 'id:' to the start cursor and carries no "
                "data. A comment line arrives at least every 15 seconds. Any other parameter "
                "named like an extension attribute (a-z, 0-9) filters on that attribute.",
                "parameters": _STREAM_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "An endless stream of events in sequence order.",
                        "content": _EVENT_STREAM,
                    },
                    "400": _problem("A parameter or the Last-Event-ID header is invalid."),
                    "410": _problem("The cursor is older than the retention horizon."),
                    "503": _problem("The server is shutting down."),
                },
            }
        },
        "/": {
            "get": {
                "summary": "The live dashboard, a page that follows /events/stream.",
                "operationId": "dashboard",
                "responses": {"200": {"description": "HTML.", "content": {"text/html": {}}}},
            }
        },
        "/tokens": {
            "post": {
                "summary": "Create a token (admin). The secret is in this response only.",
                "operationId": "createToken",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name", "grants"],
                                "properties": {
                                    "name": {
                                        "type": "string",
                                        "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                                    },
                                    "grants": {"type": "array", "items": _GRANT},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "The token, shown once.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/IssuedToken"}
                            }
                        },
                    },
                    "400": _problem("The name or a grant is invalid."),
                    "401": _problem("No token, or an unknown one."),
                    "403": _problem("The token is not an admin's."),
                    "409": _problem("A token with this name exists."),
                },
            },
            "get": {
                "summary": "List tokens' names and grants (admin); never the secrets.",
                "operationId": "listTokens",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {
                        "description": "Every token.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/TokenInfo"},
                                }
                            }
                        },
                    },
                    "401": _problem("No token, or an unknown one."),
                    "403": _problem("The token is not an admin's."),
                },
            },
        },
        "/tokens/{name}": {
            "delete": {
                "summary": "Revoke a token (admin); it fails from the next request on.",
                "operationId": "revokeToken",
                "security": [{"bearer": []}],
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "204": {"description": "Revoked."},
                    "401": _problem("No token, or an unknown one."),
                    "403": _problem("The token is not an admin's."),
                    "404": _problem("No token has this name."),
                },
            }
        },
        "/audit": {
            "get": {
                "summary": "Read the audit trail (admin), oldest first, with a Link to the next page.",
                "operationId": "readAudit",
                "security": [{"bearer": []}],
                "parameters": [
                    {"name": "principal", "in": "query", "schema": {"type": "string"}},
                    {"name": "action", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {"name": "after", "in": "query", "schema": {**_SEQUENCE}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Audit records.",
                        "headers": _LINK_HEADER,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/AuditRecord"},
                                }
                            }
                        },
                    },
                    "400": _problem("A parameter is invalid."),
                    "401": _problem("No token, or an unknown one."),
                    "403": _problem("The token is not an admin's."),
                },
            }
        },
        **_SUBSCRIPTION_PATHS,
        **_HISTORY_PATHS,
        "/health": {
            "get": {
                "summary": "Whether the log can commit, and its head.",
                "operationId": "health",
                "responses": {
                    "200": {
                        "description": "The log accepts events.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status", "head"],
                                    "properties": {
                                        "status": {"const": "ok"},
                                        "head": {"type": "integer"},
                                        "earliest": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    "503": _problem("The log cannot commit."),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (counts only, no event data).",
                "operationId": "metrics",
                "responses": {
                    "200": {"description": "Text format 0.0.4.", "content": {"text/plain": {}}}
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "operationId": "openapi",
                "responses": {
                    "200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}}
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            **_HISTORY_SCHEMAS,
            "CloudEvent": _CLOUDEVENT,
            "PublishedEvent": _PUBLISHED_EVENT,
            "DeliveredEvent": _DELIVERED_EVENT,
            "Problem": _PROBLEM,
            "IssuedToken": {
                "type": "object",
                "required": ["name", "token", "grants"],
                "properties": {
                    "name": {"type": "string"},
                    "token": {"type": "string"},
                    "grants": {"type": "array", "items": {"type": "string"}},
                },
            },
            "TokenInfo": {
                "type": "object",
                "required": ["name", "grants", "created"],
                "properties": {
                    "name": {"type": "string"},
                    "grants": {"type": "array", "items": {"type": "string"}},
                    "created": {"type": "string", "format": "date-time"},
                },
            },
            "AuditRecord": {
                "type": "object",
                "required": ["id", "time", "principal", "action", "outcome", "status"],
                "properties": {
                    "id": {"type": "integer"},
                    "time": {"type": "string", "format": "date-time"},
                    "principal": {"type": "string"},
                    "action": {"type": "string"},
                    "outcome": {"enum": ["ok", "denied", "failed"]},
                    "status": {"type": "integer"},
                    "client": {"type": ["string", "null"]},
                    "count": {"type": ["integer", "null"]},
                    "first_sequence": {"type": ["integer", "null"]},
                    "last_sequence": {"type": ["integer", "null"]},
                    "detail": {"type": ["object", "null"]},
                },
            },
        },
    },
}

_ENCODED = orjson.dumps(DOCUMENT)


async def openapi(request: Request) -> Response:
    return Response(_ENCODED, media_type="application/json")
