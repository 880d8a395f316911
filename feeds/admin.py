"""Admin endpoints: `/tokens` to manage tokens and `/audit` to read the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import ciso8601
import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventlog import EventLog
from eventlog.errors import TokenExists
from eventlog.storage import AuditQuery, StoredAudit, TokenRecord
from feeds.access import audit_record, authenticate, require
from feeds.grants import InvalidGrant, Principal
from feeds.pages import MAX_SEQUENCE, parse_whole_number
from feeds.problems import Problem, bad_request, shown
from feeds.publish import read_body
from feeds.tokens import InvalidTokenName, TokenRegistry

MAX_AUDIT_LIMIT = 1000
_ADMIN_BODY_BYTES = 64 * 1024


def _admin(request: Request, action: str) -> Principal:
    principal = authenticate(request, action)
    require(request, principal, "admin", action)
    return principal


async def create_token(request: Request) -> Response:
    principal = _admin(request, "token.create")
    document = await _json_object(request)
    name = document.get("name")
    grants = document.get("grants")
    if not isinstance(name, str):
        raise bad_request("The body needs 'name', a string such as \"orders-publisher\".")
    if not isinstance(grants, list) or not all(isinstance(grant, str) for grant in grants):
        raise bad_request(
            "The body needs 'grants', a list of strings such as "
            '["publish source=https://orders.example.com/*"].'
        )

    tokens: TokenRegistry = request.app.state.tokens
    audit = audit_record(
        request, principal.name, "token.create", 201, detail={"name": name, "grants": grants}
    )
    try:
        issued = await tokens.create(name, tuple(grants), audit)
    except (InvalidTokenName, InvalidGrant) as error:
        raise bad_request(str(error)) from error
    except TokenExists as error:
        raise Problem(409, "token-exists", "Token exists", str(error)) from error
    body = {"name": issued.name, "token": issued.token, "grants": list(issued.grants)}
    return Response(orjson.dumps(body), 201, media_type="application/json")


async def list_tokens(request: Request) -> Response:
    _admin(request, "token.list")
    tokens: TokenRegistry = request.app.state.tokens
    body = [_token_json(record) for record in tokens.records()]
    return Response(orjson.dumps(body), media_type="application/json")


async def revoke_token(request: Request) -> Response:
    principal = _admin(request, "token.revoke")
    name = request.path_params["name"]
    tokens: TokenRegistry = request.app.state.tokens
    audit = audit_record(request, principal.name, "token.revoke", 204, detail={"name": name})
    if not await tokens.revoke(name, audit):
        raise Problem(
            404, "not-found", "Not found", f"No token is named {name!r}; see GET /tokens."
        )
    return Response(status_code=204)


async def read_audit(request: Request) -> Response:
    _admin(request, "audit.read")
    query = _audit_query(request)
    log: EventLog = request.app.state.log
    rows = await log.read_audit(query)
    next_after = rows[-1].id if rows else query.after_id
    parameters = [
        (name, value) for name, value in request.query_params.multi_items() if name != "after"
    ]
    parameters.append(("after", str(next_after)))
    link = str(request.url.replace(query=urlencode(parameters)))
    body = orjson.dumps([_audit_json(row) for row in rows])
    return Response(body, headers={"Link": f'<{link}>; rel="next"'}, media_type="application/json")


def _audit_query(request: Request) -> AuditQuery:
    allowed = ("principal", "action", "since", "until", "after", "limit")
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise bad_request(
                f"Unknown parameter {name!r}; /audit takes {', '.join(allowed)}.", parameter=name
            )
        if name in values:
            raise bad_request(f"The parameter {name!r} is given more than once.", parameter=name)
        values[name] = value

    times = {}
    for name in ("since", "until"):
        if name in values:
            try:
                times[name] = ciso8601.parse_rfc3339(values[name])
            except ValueError:
                raise bad_request(
                    f"The parameter {name!r} must be an RFC 3339 time such as "
                    f"'2024-05-01T12:00:00Z', not {values[name]!r}.",
                    parameter=name,
                ) from None
    after = _number(values, "after", 0, 0, None)
    limit = _number(values, "limit", 100, 1, MAX_AUDIT_LIMIT)
    return AuditQuery(
        principal=values.get("principal"),
        action=values.get("action"),
        since=times.get("since"),
        until=times.get("until"),
        after_id=after,
        limit=limit,
    )


def _number(values: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    text = values.get(name)
    if text is None:
        return default
    top = MAX_SEQUENCE if high is None else high
    number = parse_whole_number(text, top)
    if number is not None and number >= low:
        return number
    raise bad_request(
        f"The parameter {name!r} must be a whole number from {low} to {top}, "
        f"not {shown(text)}.",
        parameter=name,
    )


async def _json_object(request: Request) -> dict[str, Any]:
    body = await read_body(request, _ADMIN_BODY_BYTES)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"The body is not valid JSON: {error}.") from error
    if not isinstance(document, dict):
        raise bad_request("The body must be a JSON object.")
    return document


def _token_json(record: TokenRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "grants": list(record.grants),
        "created": _utc(record.created),
    }


def _audit_json(row: StoredAudit) -> dict[str, Any]:
    record = row.record
    return {
        "id": row.id,
        "time": _utc(record.time),
        "principal": record.principal,
        "action": record.action,
        "outcome": record.outcome,
        "status": record.status,
        "client": record.client,
        "count": record.count,
        "first_sequence": record.first_sequence,
        "last_sequence": record.last_sequence,
        "detail": record.detail,
    }


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
