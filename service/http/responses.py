"""JSON responses encoded by msgspec's shared encoder."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from service.core.models import ENCODER


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        ENCODER.encode(body), status_code=status, media_type="application/json", headers=headers
    )


def page_response(request: Request, body: object, *, cursor: str, after: object | None) -> Response:
    """A page of a listing; when more follow, `Link: <same URL, cursor=after>; rel="next"`."""
    headers = {}
    if after is not None:
        next_url = request.url.include_query_params(**{cursor: after})
        headers["Link"] = f'<{next_url}>; rel="next"'
    return json_response(body, headers=headers)
