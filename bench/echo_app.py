"""The HTTP floor: a bare Starlette app with one POST route that reads the body and answers
200, run under the web process's own uvicorn command line (`bench.echo_app:create_app
--factory`, the Procfile's flags and protocol) with the same logging (LOG_FORMAT, ACCESS_LOG).
What serving a POST costs here before any work: ingest is measured against it
(docs/performance.md).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config import Config
from service import logs

OK = b'{"received":true}'


async def echo(request: Request) -> Response:
    await request.body()
    return Response(OK, media_type="application/json")


def create_app() -> Starlette:
    config = Config.from_env()
    logs.configure(config)  # the service's logging: the access log as shipped
    logs.lean_records()
    return Starlette(routes=[Route("/api/webhooks", echo, methods=["POST"])])
