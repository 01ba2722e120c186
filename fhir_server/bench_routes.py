"""Bare baseline routes for the benchmark (`PHR_BENCH_ROUTES=1`; see docs/benchmarks.md).

Same app, process, collection, query and document shape as the FHIR routes, with none of the FHIR
work: no type/id checks, negotiation, validation, indexing or version headers. Never enable in
production: they bypass every check.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pymongo.asynchronous.collection import AsyncCollection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.storage.versions import now

_FIELDS = {"json": 1, "v": 1, "lu": 1, "m": 1}
_MEDIA = "application/json"


def _collection(request: Request) -> AsyncCollection[Any]:
    coll: AsyncCollection[Any] = request.app.state.services.repository.db[
        request.path_params["type"]
    ]
    return coll


async def bare_read(request: Request) -> Response:
    """GET /bare/{type}/{id}: the stored bytes, or an empty 404."""
    doc = await _collection(request).find_one({"_id": request.path_params["id"]}, _FIELDS)
    if doc is None or doc.get("json") is None:
        return Response(status_code=404)
    return Response(doc["json"], media_type=_MEDIA)


async def bare_create(request: Request) -> Response:
    """POST /bare/{type}: insert the body as-is in the repository's document shape."""
    body = await request.body()
    doc = {"_id": str(uuid4()), "v": 1, "lu": now(), "m": "POST", "json": body, "pat": []}
    await _collection(request).insert_one(doc)
    return Response(body, status_code=201, media_type=_MEDIA)


def bare_routes() -> list[Route]:
    return [
        Route("/bare/{type}/{id}", bare_read, methods=["GET"]),
        Route("/bare/{type}", bare_create, methods=["POST"]),
    ]
