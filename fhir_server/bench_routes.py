"""Bare baseline routes for the benchmark (`PHR_BENCH_ROUTES=1`; see docs/benchmarks.md).

Same app, process, collection, query and document shape as the FHIR routes, with none of the FHIR
work: no type/id checks, negotiation, validation, indexing or version headers. Never enable in
production: they bypass every check.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import orjson
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consent.policy import AccessContext
from consent.scopes import parse_scopes
from fhir_server.access import Access
from fhir_server.compartment import compartment_query
from fhir_server.interactions import instance
from fhir_server.search.index import KEY_FIELD
from fhir_server.storage.versions import now

_FIELDS = {"json": 1, "v": 1, "lu": 1, "m": 1}
_MEDIA = "application/json"


def _db(request: Request) -> AsyncDatabase[Any]:
    db: AsyncDatabase[Any] = request.app.state.services.repository.db
    return db


def _collection(request: Request) -> AsyncCollection[Any]:
    return _db(request)[request.path_params["type"]]


def _array(parts: list[bytes]) -> Response:
    return Response(b"[" + b",".join(parts) + b"]", media_type=_MEDIA)


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
    # The repository's collection, so its indexes exist even when B runs before any FHIR create.
    repository = request.app.state.services.repository
    await (await repository.collection(request.path_params["type"])).insert_one(doc)
    return Response(body, status_code=201, media_type=_MEDIA)


async def bare_keys(request: Request) -> Response:
    """GET /bare/_k/{type}?k=KEY|gte=LOW&lt=HIGH&limit=N: one `k` index query (W2's driver
    query), answering the stored bytes as a JSON array."""
    params = request.query_params
    query = (
        {KEY_FIELD: params["k"]}
        if "k" in params
        else {KEY_FIELD: {"$gte": params["gte"], "$lt": params["lt"]}}
    )
    limit = int(params.get("limit", "20"))
    docs = await _collection(request).find(query, {"json": 1}).to_list(limit)
    return _array([d["json"] for d in docs if d.get("json") is not None])


async def bare_everything(request: Request) -> Response:
    """GET /bare/_everything/{id}: the patient's compartment, the same index query on every
    type's collection (W5), as a JSON array of the stored bytes."""
    db, pid = _db(request), request.path_params["id"]
    parts: list[bytes] = []
    for name in sorted(await db.list_collection_names()):
        if name[:1].isupper() and (query := compartment_query(name, pid)) is not None:
            async for doc in db[name].find(query, {"json": 1}):
                if doc.get("json") is not None:
                    parts.append(doc["json"])
    return _array(parts)


async def bare_ingest(request: Request) -> Response:
    """POST /bare/_ingest with a JSON array of already-resolved resources: one `insert_many` per
    type into the same collections and indexes (W4), fresh ids, no search keys."""
    repository = request.app.state.services.repository
    at = now()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in orjson.loads(await request.body()):
        doc = {"_id": str(uuid4()), "v": 1, "lu": at, "m": "POST", "c": True, "pat": []}
        doc["json"] = orjson.dumps(resource)
        by_type.setdefault(resource["resourceType"], []).append(doc)
    for rtype, docs in by_type.items():
        await (await repository.collection(rtype)).insert_many(docs, ordered=True)
    return Response(b'{"inserted":%d}' % sum(map(len, by_type.values())), media_type=_MEDIA)


# A backend's permissions, as if its token had been verified: for measuring what the token check
# itself costs (W1: the FHIR read with and without the bearer check, same handler).
_UNCHECKED = Access(AccessContext("bench", parse_scopes("system/*.rs")), "")


async def unchecked_read(request: Request) -> Response:
    """GET /bare/_fhir/{type}/{id}: the real FHIR read handler, with no token to verify."""
    request.scope.setdefault("state", {})["access"] = _UNCHECKED
    return await instance.read(request)


def bare_routes() -> list[Route]:
    # Before the generic /bare/{type}/{id} and /bare/{type} patterns, which would match them too.
    return [
        Route("/bare/_fhir/{type}/{id}", unchecked_read, methods=["GET"]),
        Route("/bare/_k/{type}", bare_keys, methods=["GET"]),
        Route("/bare/_everything/{id}", bare_everything, methods=["GET"]),
        Route("/bare/_ingest", bare_ingest, methods=["POST"]),
        Route("/bare/{type}/{id}", bare_read, methods=["GET"]),
        Route("/bare/{type}", bare_create, methods=["POST"]),
    ]
