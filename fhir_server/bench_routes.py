"""Bare baseline routes for the benchmark (`PHR_BENCH_ROUTES=1`; see docs/benchmarks.md).

Same app, process, collection, query and document shape as the FHIR routes, with none of the FHIR
work: no type/id checks, negotiation, validation, indexing or version headers. Never enable in
production: they bypass every check.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
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


def _document(item: dict[str, Any], at: datetime, doc_id: str | None = None) -> dict[str, Any]:
    """The repository's document of a baseline body's `{"resource": ..., "pat": ..., "k": ...}`
    (the search and compartment fields computed beforehand by the bench, or none)."""
    resource = item.pop("resource")
    return {
        "_id": doc_id or resource["id"],
        "v": 1,
        "lu": at,
        "m": "POST",
        "c": True,
        "pat": [],
        **item,
        "json": orjson.dumps(resource),
    }


async def bare_create(request: Request) -> Response:
    """POST /bare/{type} with `{"resource": ..., "pat": ..., "k": ...}` (W3): `insert_one` of the
    repository's document, under a fresh id."""
    doc = _document(orjson.loads(await request.body()), now(), str(uuid4()))
    # The repository's collection, so its indexes exist even when B runs before any FHIR create.
    repository = request.app.state.services.repository
    await (await repository.collection(request.path_params["type"])).insert_one(doc)
    return Response(doc["json"], status_code=201, media_type=_MEDIA)


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


# Synthea's ids (and so the references, identifiers and search keys holding them) are uuids.
_UUID = re.compile(rb"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


@lru_cache(maxsize=2)
def _split(body: bytes) -> tuple[tuple[bytes, ...], frozenset[bytes]]:
    """`body` cut around its uuids (the odd parts), and its resources' ids. W4 posts one body
    over and over, and the scan costs ~30 ms per Bundle: no work of B's."""
    ids = frozenset(item["resource"]["id"].encode() for item in orjson.loads(body))
    return tuple(_UUID.split(body)), ids


def _fresh_ids(body: bytes) -> bytes:
    """`body` with a fresh id for every resource, in its references and keys too, as the server
    assigns them to a posted Bundle's resources (identifiers keep their values, as there)."""
    parts, ids = _split(body)
    fresh = {uuid: str(uuid4()).encode() for uuid in ids}
    return b"".join(fresh.get(part, part) if n % 2 else part for n, part in enumerate(parts))


async def bare_ingest(request: Request) -> Response:
    """POST /bare/_ingest with a JSON array of `{"resource": ..., "pat": ..., "k": ...}`, already
    resolved and indexed (W4), with fresh ids (so the keys land where C's would, not on the last
    request's), then one `insert_many` per type of the repository's documents into the same
    collections and indexes. No validation, key extraction or transaction."""
    repository = request.app.state.services.repository
    at = now()
    body = _fresh_ids(await request.body())
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in orjson.loads(body):
        rtype = item["resource"]["resourceType"]
        by_type.setdefault(rtype, []).append(_document(item, at))
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
