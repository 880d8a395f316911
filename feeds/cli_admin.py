"""Admin commands: `eventlog token create|list|revoke` and `eventlog audit`.

They call the server's `/tokens` and `/audit` endpoints, which need an admin
token; on the server's own machine the client commands find `admin.token`
in the data folder by default.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import httpx
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from feeds.cli_client import Server, rejection, send, server_options, unexpected

READ_TIMEOUT_SECONDS = 30.0


@click.group()
def token() -> None:
    """Create, list and revoke bearer tokens (needs an admin token).

    \b
    Example:
      eventlog token create --name orders --grant 'publish source=https://orders.example.com/*'
    """


@token.command("create")
@click.option("--name", required=True, help="Name of the token, such as 'orders-publisher'.")
@click.option(
    "--grant",
    "grants",
    multiple=True,
    required=True,
    help="A grant: an action (publish, read, admin) and attribute patterns; repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the response as JSON.")
@server_options
def create(server: Server, name: str, grants: tuple[str, ...], as_json: bool) -> None:
    """Create a token and print it; the server shows the secret only this once.

    \b
    Example:
      eventlog token create --name reader-1337 --grant 'read subject=/party/1337'
    """
    body = {"name": name, "grants": list(grants)}
    response = _call(server, "POST", "/tokens", json=body, expected=201)
    document = _json(response)
    if as_json:
        click.echo(orjson.dumps(document).decode())
        return
    click.echo(document["token"])
    click.echo(
        f"Created the token {name!r}; store it now, the server keeps only its hash.", err=True
    )


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as a JSON array.")
@server_options
def list_tokens(server: Server, as_json: bool) -> None:
    """List every token's name, grants and creation time (never the secrets).

    \b
    Example:
      eventlog token list --json
    """
    document = _json(_call(server, "GET", "/tokens", expected=200))
    if as_json:
        click.echo(orjson.dumps(document).decode())
        return
    table = Table("name", "grants", "created")
    for entry in document:
        table.add_row(escape(entry["name"]), escape("\n".join(entry["grants"])), entry["created"])
    Console().print(table)


@token.command("revoke")
@click.argument("name")
@server_options
def revoke(server: Server, name: str) -> None:
    """Revoke a token by name; it fails from the server's next request on.

    \b
    Example:
      eventlog token revoke reader-1337
    """
    _call(server, "DELETE", f"/tokens/{name}", expected=204)
    click.echo(f"Revoked the token {name!r}.", err=True)


@click.command()
@click.option("--principal", help="Only records of this token name ('-' for unknown callers).")
@click.option(
    "--action", help="Only this action, such as publish, read, stream.open, token.create."
)
@click.option("--since", help="Only records at or after this RFC 3339 time.")
@click.option("--until", help="Only records before this RFC 3339 time.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Records per request.",
)
@click.option(
    "--max-records",
    type=click.IntRange(min=1),
    help="Stop after this many records [default: all that match].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON record per line.")
@server_options
def audit(
    server: Server,
    principal: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    max_records: int | None,
    as_json: bool,
) -> None:
    """Print the audit trail, oldest first: who did what, when, from where.

    \b
    Example:
      eventlog audit --action publish --since 2026-01-01T00:00:00Z
    """
    params: dict[str, Any] = {"limit": limit}
    for key, value in (
        ("principal", principal),
        ("action", action),
        ("since", since),
        ("until", until),
    ):
        if value is not None:
            params[key] = value

    records: list[dict[str, Any]] = []
    after = 0
    while max_records is None or len(records) < max_records:
        response = _call(server, "GET", "/audit", params=dict(params, after=after), expected=200)
        page = _json(response)
        if not page:
            break
        records.extend(page)
        after = page[-1]["id"]
    if max_records is not None:
        records = records[:max_records]

    if as_json:
        for record in records:
            sys.stdout.write(orjson.dumps(record).decode() + "\n")
        return
    table = Table("id", "time", "principal", "action", "status", "client", "count", "sequences")
    for record in records:
        first, last = record["first_sequence"], record["last_sequence"]
        sequences = "" if first is None else f"{first}-{last}"
        table.add_row(
            str(record["id"]),
            record["time"],
            escape(record["principal"]),
            escape(record["action"]),
            str(record["status"]),
            escape(record["client"] or ""),
            "" if record["count"] is None else str(record["count"]),
            sequences,
        )
    Console().print(table)


def _call(
    server: Server,
    method: str,
    path: str,
    *,
    expected: int,
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    with server.client(READ_TIMEOUT_SECONDS) as client:
        request = client.build_request(method, server.endpoint(path), json=json, params=params)
        response = send(client, request)
    if response.status_code != expected:
        raise rejection(response, f"{method} {path}")
    return response


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise unexpected(response, "JSON") from None
