"""Authentication and authorization of requests, and the audit records they leave.

Every endpoint except `/health`, `/metrics`, `/openapi.json` and the
dashboard's files calls `authenticate` first. A missing or unknown token is
401 with `WWW-Authenticate: Bearer`; a known token without the grant is 403.
Both are audited. In no-auth mode every request is the anonymous admin, and
only requests that arrive on a loopback address are served.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from eventlog import EventLog
from eventlog.storage import AuditRecord
from feeds.grants import ANONYMOUS_ADMIN, Principal
from feeds.problems import Problem
from feeds.tokens import TokenRegistry

logger = logging.getLogger(__name__)

# The cookie a browser may carry instead of a header, and the query
# parameter of RFC 6750 section 2.3; both only on the stream endpoints.
TOKEN_COOKIE = "eventlog_token"
TOKEN_PARAMETER = "access_token"
UNKNOWN_PRINCIPAL = "-"


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def audit_record(
    request: Request, principal: str, action: str, status: int, **fields: Any
) -> AuditRecord:
    """Build an audit record of this request, stamped now."""
    outcome = "ok" if status < 400 else ("denied" if status in (401, 403) else "failed")
    return AuditRecord(
        time=datetime.now(UTC),
        principal=principal,
        action=action,
        outcome=outcome,
        status=status,
        client=client_address(request),
        **fields,
    )


def authenticate(request: Request, action: str, *, allow_query_token: bool = False) -> Principal:
    """Return the caller's principal, or raise a 401 problem (audited).

    `action` names what the request attempts, for the audit trail. With
    `allow_query_token`, the token may also come from the `access_token`
    query parameter or the dashboard's cookie, for browsers' EventSource.
    """
    if not request.app.state.settings.auth:
        _check_loopback(request)
        return ANONYMOUS_ADMIN

    token = _bearer_token(request)
    if token is None and allow_query_token:
        token = request.query_params.get(TOKEN_PARAMETER) or request.cookies.get(TOKEN_COOKIE)
    if token is None:
        raise _unauthorized(
            request,
            action,
            "This request needs a token: send 'Authorization: Bearer <token>'.",
            None,
        )

    tokens: TokenRegistry = request.app.state.tokens
    principal = tokens.authenticate(token)
    if principal is None:
        raise _unauthorized(
            request,
            action,
            "The token is unknown or revoked; ask an admin for a valid token.",
            "invalid_token",
        )
    return principal


def require(request: Request, principal: Principal, action: str, audited_action: str) -> None:
    """Raise a 403 problem (audited) unless `principal` has some grant for `action`."""
    if principal.can(action):
        return
    deny(
        request,
        principal,
        audited_action,
        f"The token {principal.name!r} has no {action!r} grant; ask an admin for one.",
    )


def deny(request: Request, principal: Principal, action: str, detail: str, **extra: Any) -> None:
    """Audit a 403 and raise its problem."""
    log: EventLog = request.app.state.log
    log.record(audit_record(request, principal.name, action, 403, detail={"reason": detail}))
    raise Problem(403, "forbidden", "Forbidden", detail, **extra)


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(request: Request, action: str, detail: str, error: str | None) -> Problem:
    log: EventLog = request.app.state.log
    log.record(audit_record(request, UNKNOWN_PRINCIPAL, action, 401, detail={"reason": detail}))
    challenge = 'Bearer realm="eventlog"'
    if error is not None:
        challenge += f', error="{error}"'
    return Problem(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge}
    )


def _check_loopback(request: Request) -> None:
    server = request.scope.get("server")
    host = server[0] if server else None
    if host is not None and not is_loopback(str(host)):
        raise Problem(
            403,
            "forbidden",
            "Forbidden",
            "This server runs without authentication and serves loopback addresses only.",
        )


class RedactTokens(logging.Filter):
    """Replace `access_token` values in log records, such as uvicorn's access log lines."""

    _PATTERN = re.compile(rf"({TOKEN_PARAMETER}=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._PATTERN.sub(r"\1REDACTED", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str) and TOKEN_PARAMETER in record.msg:
            record.msg = self._PATTERN.sub(r"\1REDACTED", record.msg)
        return True
