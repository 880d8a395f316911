"""Request bodies that are one JSON object, with the members an endpoint allows."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from starlette.requests import Request

from feeds.problems import bad_request
from feeds.publish import read_body

# Bodies of the subscription and query endpoints are small documents.
MAX_BODY_BYTES = 64 * 1024


async def read_json_object(
    request: Request, allowed: Collection[str], limit: int = MAX_BODY_BYTES
) -> dict[str, Any]:
    """Return the body as a JSON object; raise a 400 problem for anything else.

    A member not in `allowed` is rejected too, so that a misspelt member is
    not silently ignored. A body over `limit` bytes gets 413.
    """
    body = await read_body(request, limit)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"The body is not valid JSON: {error}.") from error
    if not isinstance(document, dict):
        raise bad_request(
            f"The body must be a JSON object with the members {', '.join(sorted(allowed))}."
        )
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise bad_request(
            f"The body has the unknown member {unknown[0]!r}; this endpoint takes "
            f"{', '.join(sorted(allowed))}.",
            member=unknown[0],
        )
    return document
