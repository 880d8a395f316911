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

PROBLEM = {"$ref": "#/components/schemas/Problem"}


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
        "schema": {"type": "integer", "minimum": 0, "default": 0},
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
        "precedence over 'after' and 'since'.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
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

_CLOUDEVENT: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvent 1.0.2 in the JSON format. Extension attributes are "
    "strings, booleans or 32-bit integers with names of a-z and 0-9.",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1, "format": "uri-reference"},
        "type": {"type": "string", "minLength": 1},
        "subject": {"type": "string", "minLength": 1},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string", "minLength": 1},
        "dataschema": {"type": "string", "format": "uri"},
        "data": {},
        "data_base64": {"type": "string", "contentEncoding": "base64"},
    },
    "additionalProperties": {"type": ["string", "boolean", "integer"]},
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
    "application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
    "application/cloudevents-batch+json": {
        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/CloudEvent"}}
    },
    "application/json": {
        "schema": {
            "oneOf": [
                {"$ref": "#/components/schemas/CloudEvent"},
                {"type": "array", "items": {"$ref": "#/components/schemas/CloudEvent"}},
            ]
        }
    },
    "*/*": {"schema": {}},
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

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "eventlog",
        "version": "0.1.0",
        "description": "A durable, totally ordered log of CloudEvents with pull feeds.",
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
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
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
                                    "grants": {"type": "array", "items": {"type": "string"}},
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
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
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
            "CloudEvent": _CLOUDEVENT,
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
