"""Resource versions in MongoDB: https://hl7.org/fhir/R4/http.html.

- Collection `<Type>` holds the current version of each resource, `_id` = logical id:
  `{_id, v, lu, m, c?, json?, pat, k, o}`: `json` is the exact bytes served (absent once deleted),
  `pat` the compartment patients, `k`/`o` the search and sort keys (`fhir_server/search/`).
- Collection `history` holds every superseded version, `_id` = "Type/id/v":
  `{t, id, v, lu, m, c?, json?}`.

Create is a single insert. Update, patch and delete copy the superseded version into `history` and
swap the current document in one transaction. The swap is a compare-and-set on the version, so when
N writers update version n at once exactly one wins; nothing is left half-written if any step fails.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import uuid4

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from fhir_server.jsonbody import dumps, loads
from fhir_server.offload import off_loop
from fhir_server.storage.versions import Version, now, stamp

log = logging.getLogger("phr")
HISTORY = "history"
# IndexOptionsConflict, IndexKeySpecsConflict: an index with these keys exists by another name.
_INDEX_CONFLICTS = frozenset({85, 86})
_VERSION_FIELDS = {"_id": 1, "v": 1, "lu": 1, "m": 1, "c": 1, "json": 1, "pat": 1}
_MAX_ATTEMPTS = 5
# History order: newest first, then by type, id and version so that ties have one fixed order;
# the instance and type orders drop the fields their queries fix.
_LU, _T, _ID, _V = (("lu", DESCENDING), ("t", DESCENDING), ("id", DESCENDING), ("v", DESCENDING))
_INSTANCE_ORDER, _TYPE_ORDER, _SYSTEM_ORDER = [_LU, _V], [_LU, _ID, _V], [_LU, _T, _ID, _V]


class VersionConflict(Exception):
    """The resource's current version is not the one the writer expected."""

    def __init__(self, current: int | None) -> None:
        super().__init__(current)
        self.current = current


class Indexer(Protocol):
    """Computes the indexed fields stored beside a resource (compartment, search values)."""

    def fields(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]: ...

    def indexes(self, resource_type: str) -> list[IndexModel]: ...


@dataclass(frozen=True)
class Write:
    """One write of a transaction; `resource_id` is already assigned for creates."""

    method: str  # POST, PUT, PATCH or DELETE
    resource_type: str
    resource_id: str
    body: dict[str, Any] | None = None
    expected: int | None = None  # If-Match


@dataclass(frozen=True)
class _Prepared:
    """A body stamped as version 1 at `at`, with its indexed fields."""

    at: datetime
    resource: dict[str, Any]
    fields: dict[str, Any]


@dataclass(frozen=True)
class WriteResult:
    version: Version | None  # None: a delete of something that never existed
    created: bool
    changed: bool


@dataclass(frozen=True)
class HistoryPage:
    versions: list[Version]
    next_cursor: str | None
    total: int | None = None


def _version(resource_type: str, doc: dict[str, Any]) -> Version:
    created = bool(doc.get("c"))
    if "t" in doc:  # a history document
        return Version(doc["t"], doc["id"], doc["v"], doc["lu"], doc["m"], doc.get("json"), created)
    pat = doc.get("pat")
    return Version(
        resource_type,
        doc["_id"],
        doc["v"],
        doc["lu"],
        doc["m"],
        doc.get("json"),
        created,
        None if pat is None else tuple(pat),
    )


def _history_copy(resource_type: str, doc: dict[str, Any]) -> dict[str, Any]:
    copy = {
        "_id": f"{resource_type}/{doc['_id']}/{doc['v']}",
        "t": resource_type,
        "id": doc["_id"],
        "v": doc["v"],
        "lu": doc["lu"],
        "m": doc["m"],
    }
    if doc.get("c"):
        copy["c"] = True
    if doc.get("json") is not None:
        copy["json"] = doc["json"]
    return copy


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without the server-owned parts of `meta` (versionId, lastUpdated)."""
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in {"versionId", "lastUpdated"}
    }
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


def unchanged(stored: bytes, body: dict[str, Any]) -> bool:
    """True when `body` says exactly what the stored version says (ignoring versionId/lastUpdated
    and a missing `id`)."""
    before = _content(loads(stored))
    after = _content(body)
    after.setdefault("id", before.get("id"))
    return before == after


def _is_write_conflict(exc: OperationFailure) -> bool:
    return exc.code == 112 or exc.has_error_label("TransientTransactionError")


def parse_cursor(cursor: str) -> tuple[datetime, int]:
    """`<epoch ms>.<skip>`: entries at or before that instant, skipping `skip` at it."""
    ms, skip = cursor.split(".", 1)
    return datetime.fromtimestamp(int(ms) / 1000, UTC), int(skip)


def _format_cursor(at: datetime, skip: int) -> str:
    return f"{round(at.timestamp() * 1000)}.{skip}"


class Repository:
    """Every read and write of FHIR resources goes through here."""

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], db_name: str, indexer: Indexer
    ) -> None:
        self.client = client
        self.db = client[db_name]
        self.indexer = indexer
        self._ensured: set[str] = set()

    # -- collections and indexes -------------------------------------------------------------

    async def ensure_history_indexes(self) -> None:
        if HISTORY in self._ensured:
            return
        await self.db[HISTORY].create_indexes(
            [
                IndexModel([("t", ASCENDING), ("id", ASCENDING), *_INSTANCE_ORDER]),
                IndexModel([("t", ASCENDING), *_TYPE_ORDER]),
                IndexModel(_SYSTEM_ORDER),
            ]
        )
        self._ensured.add(HISTORY)

    async def upgrade_layout(self) -> int:
        """Bring type collections written by earlier versions to the current layout: search keys
        as `{v: key}` subdocuments indexed on `k.v` by an index named after their layout
        (`search.index.KEY_INDEX`), no `pat` index (docs/storage.md). A collection holding an
        index on `k`, `k.v` or `pat` that is not one of the indexer's gets every current
        version's index fields computed again from its JSON, then loses those indexes.
        Idempotent and safe to run by several workers at once; returns how many documents it
        re-indexed."""
        count = 0
        for name in sorted(await self.db.list_collection_names()):
            if name[:1].isupper():  # type collections only (docs/storage.md)
                count += await self._upgrade(name) or 0
        return count

    async def _upgrade(self, name: str) -> int | None:
        """`upgrade_layout` for one type collection: how many documents it re-indexed, None if
        the collection was in the current layout already."""
        coll = self.db[name]
        indexes = await coll.index_information()
        current = {model.document["name"] for model in self.indexer.indexes(name)}
        old = [
            n
            for n, spec in indexes.items()
            if spec["key"][0][0] in ("k", "k.v", "pat") and n not in current
        ]
        if not old:
            return None
        log.warning("re-indexing %s for the current storage layout", name)
        count = 0
        async for doc in coll.find({"json": {"$exists": True}}, {"json": 1}):
            fields = self.indexer.fields(name, loads(doc["json"]))
            await coll.update_one({"_id": doc["_id"]}, {"$set": fields})
            count += 1
        for index in old:
            with contextlib.suppress(OperationFailure):  # another worker dropped it
                await coll.drop_index(index)
        self._ensured.discard(name)
        await self.collection(name)
        return count

    async def collection(self, resource_type: str) -> AsyncCollection[dict[str, Any]]:
        """The type's collection, its indexes created once per process before first use."""
        coll = self.db[resource_type]
        if resource_type not in self._ensured:
            try:
                await coll.create_indexes(
                    [
                        IndexModel([("lu", DESCENDING), ("_id", DESCENDING)]),
                        *self.indexer.indexes(resource_type),
                    ]
                )
            except OperationFailure as exc:
                # An index of an earlier layout under another name: start-up could not upgrade
                # the database (it was unreachable), so this collection is upgraded now.
                if exc.code not in _INDEX_CONFLICTS or await self._upgrade(resource_type) is None:
                    raise
                return coll
            self._ensured.add(resource_type)
        return coll

    # -- reads ---------------------------------------------------------------------------

    async def read(self, resource_type: str, resource_id: str) -> Version | None:
        """https://hl7.org/fhir/R4/http.html#read (deleted versions come back with json=None)."""
        doc = await self.db[resource_type].find_one({"_id": resource_id}, _VERSION_FIELDS)
        return None if doc is None else _version(resource_type, doc)

    async def vread(self, resource_type: str, resource_id: str, version: int) -> Version | None:
        """https://hl7.org/fhir/R4/http.html#vread."""
        current = await self.read(resource_type, resource_id)
        if current is None or version > current.version:
            return None
        if version == current.version:
            return current
        doc = await self.db[HISTORY].find_one({"_id": f"{resource_type}/{resource_id}/{version}"})
        return None if doc is None else _version(resource_type, doc)

    # -- writes --------------------------------------------------------------------------

    def _prepare(
        self, resource_type: str, resource_id: str, body: dict[str, Any], at: datetime | None = None
    ) -> _Prepared:
        """Stamp a body and compute its indexed fields: the CPU work of a write, done before any
        transaction opens (no search parameter reads `meta.versionId`, so it waits for the
        version number, which only the transaction knows)."""
        at = at or now()
        resource = stamp(body, resource_id, 1, at)
        return _Prepared(at, resource, self.indexer.fields(resource_type, resource))

    def _document(
        self,
        resource_type: str,
        resource_id: str,
        version: int,
        method: str,
        body: dict[str, Any] | _Prepared,
        created: bool,
    ) -> dict[str, Any]:
        """The stored document of a new version; `c` marks versions that (re)created it."""
        prepared = (
            body if isinstance(body, _Prepared) else self._prepare(resource_type, resource_id, body)
        )
        resource = prepared.resource
        if version != 1:
            resource = {**resource, "meta": {**resource["meta"], "versionId": str(version)}}
        doc = {
            "_id": resource_id,
            "v": version,
            "lu": prepared.at,
            "m": method,
            "json": dumps(resource),
        }
        if created:
            doc["c"] = True
        doc.update(prepared.fields)
        return doc

    async def create(self, resource_type: str, body: dict[str, Any]) -> Version:
        """https://hl7.org/fhir/R4/http.html#create: a server-assigned id, version 1."""
        coll = await self.collection(resource_type)
        doc = self._document(resource_type, str(uuid4()), 1, "POST", body, True)
        await coll.insert_one(doc)
        return _version(resource_type, doc)

    async def update(
        self,
        resource_type: str,
        resource_id: str,
        body: dict[str, Any] | Callable[[Version], dict[str, Any]],
        *,
        expected: int | None = None,
        method: str = "PUT",
    ) -> tuple[Version, bool]:
        """https://hl7.org/fhir/R4/http.html#update; returns (new version, created).

        `body` may be a function of the live current version (patch). `expected` is If-Match.
        """

        prepared = None if callable(body) else self._prepare(resource_type, resource_id, body)

        def next_doc(current: dict[str, Any] | None) -> dict[str, Any] | None:
            live = current is not None and current.get("json") is not None
            if callable(body):
                if current is None or not live:
                    raise VersionConflict(current["v"] if current else None)
                new_body = body(_version(resource_type, current))
            else:
                new_body = body
            if live and current is not None and unchanged(current["json"], new_body):
                return None  # same content: no new version (reloading data is idempotent)
            version = current["v"] + 1 if current else 1
            content = new_body if prepared is None else prepared
            return self._document(resource_type, resource_id, version, method, content, not live)

        doc, current = await self._swap(resource_type, resource_id, next_doc, expected)
        if doc is None:
            assert current is not None
            return _version(resource_type, current), False
        return _version(resource_type, doc), current is None or current.get("json") is None

    async def delete(self, resource_type: str, resource_id: str) -> Version | None:
        """https://hl7.org/fhir/R4/http.html#delete: a tombstone version; None if never existed."""

        def tombstone(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current.get("json") is None:
                return None  # nothing to delete, or already deleted: no new version
            return {"_id": resource_id, "v": current["v"] + 1, "lu": now(), "m": "DELETE"}

        doc, current = await self._swap(resource_type, resource_id, tombstone, None)
        if doc is not None:
            return _version(resource_type, doc)
        return None if current is None else _version(resource_type, current)

    async def _swap(
        self,
        resource_type: str,
        resource_id: str,
        next_doc: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        expected: int | None,
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Replace the current document by `next_doc(current)` in one transaction.

        Returns (new document or None for a no-op, previous document). Write conflicts are retried:
        a writer that named the version it expected then sees the version that won, and a 412
        names it (the conflicting transaction may also have aborted, and this writer win).
        """
        coll = await self.collection(resource_type)
        history = self.db[HISTORY]
        await self.ensure_history_indexes()
        for _attempt in range(_MAX_ATTEMPTS):
            async with self.client.start_session() as session:
                try:
                    async with await session.start_transaction():
                        current = await coll.find_one({"_id": resource_id}, session=session)
                        current_version = current["v"] if current else None
                        if expected is not None and expected != current_version:
                            raise VersionConflict(current_version)
                        doc = next_doc(current)
                        if doc is None:
                            return None, current
                        if current is None:
                            await coll.insert_one(doc, session=session)
                            return doc, None
                        await history.insert_one(
                            _history_copy(resource_type, current), session=session
                        )
                        swapped = await coll.replace_one(
                            {"_id": resource_id, "v": current["v"]}, doc, session=session
                        )
                        if swapped.matched_count != 1:
                            raise DuplicateKeyError("the version changed during the write")
                        return doc, current
                except DuplicateKeyError:
                    pass  # a concurrent writer took this version
                except OperationFailure as exc:
                    if not _is_write_conflict(exc):
                        raise
        raise VersionConflict(None)

    # -- transactions --------------------------------------------------------------------

    async def transact(self, writes: list[Write]) -> list[WriteResult]:
        """Apply `writes` all-or-nothing in one MongoDB transaction (Bundle type transaction).

        Creates are grouped into one `insert_many` per type; updates and deletes swap documents
        with the same version compare-and-set as single writes. A write conflict with another
        transaction retries the whole set; an If-Match mismatch raises VersionConflict.
        """
        for rtype in {w.resource_type for w in writes}:
            await self.collection(rtype)
        await self.ensure_history_indexes()
        # Every version of one transaction has the same lastUpdated; the transaction itself
        # only reads the current versions and writes.
        at = now()

        def prepare() -> dict[tuple[str, str], _Prepared]:
            return {
                (w.resource_type, w.resource_id): self._prepare(
                    w.resource_type, w.resource_id, w.body, at
                )
                for w in writes
                if w.body is not None
            }

        # Off the event loop (the search keys of a 300-resource Bundle take ~70 ms), so that
        # other requests' transactions keep the database busy meanwhile.
        prepared = await off_loop(prepare)
        for _attempt in range(_MAX_ATTEMPTS):
            async with self.client.start_session() as session:
                try:
                    async with await session.start_transaction():
                        return await self._apply(writes, prepared, at, session)
                except DuplicateKeyError:
                    pass
                except OperationFailure as exc:
                    if not _is_write_conflict(exc):
                        raise
        raise VersionConflict(None)

    async def _apply(
        self,
        writes: list[Write],
        prepared: dict[tuple[str, str], _Prepared],
        at: datetime,
        session: Any,
    ) -> list[WriteResult]:
        wanted: dict[str, list[str]] = {}
        for w in writes:
            if w.method != "POST":
                wanted.setdefault(w.resource_type, []).append(w.resource_id)
        currents: dict[tuple[str, str], dict[str, Any]] = {}
        for rtype, ids in wanted.items():
            async for doc in self.db[rtype].find({"_id": {"$in": ids}}, session=session):
                currents[(rtype, doc["_id"])] = doc
        inserts: dict[str, list[dict[str, Any]]] = {}
        history: list[dict[str, Any]] = []
        results: list[WriteResult] = []
        for w in writes:
            current = currents.get((w.resource_type, w.resource_id))
            live = current is not None and current.get("json") is not None
            if w.expected is not None and w.expected != (current["v"] if current else None):
                raise VersionConflict(current["v"] if current else None)
            if w.method == "DELETE":
                if current is None or not live:
                    results.append(
                        WriteResult(
                            _version(w.resource_type, current) if current else None, False, False
                        )
                    )
                    continue
                doc = {"_id": w.resource_id, "v": current["v"] + 1, "lu": at, "m": "DELETE"}
            else:
                assert w.body is not None
                if live and current is not None and unchanged(current["json"], w.body):
                    results.append(WriteResult(_version(w.resource_type, current), False, False))
                    continue
                version = current["v"] + 1 if current else 1
                doc = self._document(
                    w.resource_type,
                    w.resource_id,
                    version,
                    w.method,
                    prepared[(w.resource_type, w.resource_id)],
                    not live,
                )
            if current is None:
                inserts.setdefault(w.resource_type, []).append(doc)
            else:
                history.append(_history_copy(w.resource_type, current))
                swapped = await self.db[w.resource_type].replace_one(
                    {"_id": w.resource_id, "v": current["v"]}, doc, session=session
                )
                if swapped.matched_count != 1:
                    raise DuplicateKeyError("the version changed during the transaction")
            currents[(w.resource_type, w.resource_id)] = doc
            results.append(WriteResult(_version(w.resource_type, doc), not live, True))
        for rtype, docs in inserts.items():
            await self.db[rtype].insert_many(docs, ordered=True, session=session)
        if history:
            await self.db[HISTORY].insert_many(history, ordered=True, session=session)
        return results

    # -- history -------------------------------------------------------------------------

    async def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        count: int,
        since: datetime | None,
        cursor: str | None,
    ) -> HistoryPage:
        """https://hl7.org/fhir/R4/http.html#history, newest first, paged by a stable cursor.

        Streams (the current documents of each type, then `history`) are each read in
        (lastUpdated desc, _id desc) order from an index and merged.
        """
        await self.ensure_history_indexes()
        until, skip = parse_cursor(cursor) if cursor else (None, 0)
        time_filter: dict[str, Any] = {}
        if since is not None:
            # `lu >= since` written as `lu > t` (lu has millisecond precision): SecantusDB drops
            # the keys equal to an inclusive bound at the end of a compound index scan.
            before = since - timedelta(microseconds=1)
            time_filter["$gt"] = before.replace(microsecond=before.microsecond // 1000 * 1000)
        if until is not None:
            time_filter["$lte"] = until
        current_filter: dict[str, Any] = {"lu": time_filter} if time_filter else {}
        history_filter = dict(current_filter)
        if resource_id is not None:
            current_filter["_id"] = resource_id
            history_filter["id"] = resource_id
        if resource_type is not None:
            history_filter["t"] = resource_type
            types = [resource_type]
        else:
            names = await self.db.list_collection_names()
            types = sorted(n for n in names if n[:1].isupper())
        limit = count + skip + 1
        streams: list[list[tuple[tuple[Any, ...], Version]]] = []
        # Every stream is sorted by the version's own key (lastUpdated, type, id, version), never
        # by where it is stored: a version moving from its type's collection into `history`
        # between two pages keeps its place among versions stamped in the same millisecond.
        order = [("lu", DESCENDING), ("_id", DESCENDING)]
        for rtype in types:
            docs = (
                await self.db[rtype]
                .find(current_filter, _VERSION_FIELDS)
                .sort(order)
                .to_list(limit)
            )
            streams.append([((d["lu"], rtype, d["_id"], d["v"]), _version(rtype, d)) for d in docs])
        if resource_id is not None:
            history_order = _INSTANCE_ORDER
        elif resource_type is not None:
            history_order = _TYPE_ORDER
        else:
            history_order = _SYSTEM_ORDER
        docs = await self.db[HISTORY].find(history_filter).sort(history_order).to_list(limit)
        streams.append([((d["lu"], d["t"], d["id"], d["v"]), _version("", d)) for d in docs])
        merged = [v for _, v in heapq.merge(*streams, key=lambda e: e[0], reverse=True)]
        if until is not None:
            at_until = sum(1 for v in merged if v.last_updated == until)
            merged = merged[min(skip, at_until) :]
        page, more = merged[:count], len(merged) > count
        next_cursor = None
        if more and page:
            last = page[-1].last_updated
            at_last = sum(1 for v in page if v.last_updated == last)
            if until is not None and last == until:
                at_last += skip
            next_cursor = _format_cursor(last, at_last)
        total = None
        if (
            resource_id is not None
            and resource_type is not None
            and cursor is None
            and since is None
        ):
            current = await self.read(resource_type, resource_id)
            total = current.version if current else 0
        return HistoryPage(page, next_cursor, total)
