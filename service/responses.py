"""JSON responses encoded by msgspec's shared encoder."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from service.models import ENCODER


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        ENCODER.encode(body), status_code=status, media_type="application/json", headers=headers
    )
