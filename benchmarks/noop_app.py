"""The HTTP ceiling: the same server stack as `eventlog serve`, with endpoints that do no work.

`POST /events` reads and parses the JSON body with orjson, as the publish
endpoint does, and responds with 201 and `{"sequence": 1}`. `GET /events`
responds with a page of 100 pre-encoded workload events (the same bytes a
real page of the workload sends) and a `Link` header. Run it under uvicorn with the settings
that `eventlog serve` uses:

    python benchmarks/noop_app.py --port 8100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import Workload

BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"


def _page_body() -> bytes:
    events = []
    for sequence, event in enumerate(Workload(seed=1).events(0, 100), start=1):
        event["sequence"] = str(sequence)
        event["recordedtime"] = "2024-01-01T00:00:00.000000Z"
        events.append(orjson.dumps(event))
    return b"[" + b",".join(events) + b"]"


PAGE = _page_body()


async def publish(request: Request) -> Response:
    body = await request.body()
    value = orjson.loads(body)
    document = {"sequences": list(range(len(value))), "duplicates": 0} if isinstance(
        value, list
    ) else {"sequence": 1}
    return Response(orjson.dumps(document), 201, media_type="application/json")


async def page(request: Request) -> Response:
    after = int(request.query_params.get("after", "0"))
    headers = {"Link": f'<{request.url.replace(query=f"after={after + 100}")}>; rel="next"'}
    return Response(PAGE, 200, headers=headers, media_type=BATCH_MEDIA_TYPE)


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/events", publish, methods=["POST"]),
        Route("/events", page, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the no-op baseline server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    options = parser.parse_args()
    # The same choices as `eventlog serve`: uvloop, httptools, one process.
    uvicorn.run(
        app,
        host=options.host,
        port=options.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
