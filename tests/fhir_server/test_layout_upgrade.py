"""A database written in an earlier storage layout (flat `k` strings, a `pat` index, or keys of an
earlier key layout) is brought to the current one at start-up (`Repository.upgrade_layout`,
docs/storage.md), so its resources stay searchable."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from fhir_server.indexing import ResourceIndexer
from fhir_server.search.index import KEY_INDEX
from fhir_server.storage.repository import Repository
from tests.support import EmbeddedDatabase

BASE = "http://example.org/fhir"
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "meta": {"versionId": "1", "lastUpdated": "2026-11-01T00:00:00.000Z"},
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
}


AT = datetime(2026, 11, 1, tzinfo=UTC)
LIVE = {"_id": "o1", "v": 1, "lu": AT, "m": "POST", "pat": ["p1"]}


def _upgrade(
    database: EmbeddedDatabase,
    prepare: Callable[[AsyncCollection], Awaitable[None]],
    at_start: bool = True,
) -> tuple[int, int, dict, dict]:
    """(documents re-indexed by a first and a second upgrade, document o1 afterwards, the
    collection's indexes) of an Observation collection that `prepare` filled; without
    `at_start`, the collection is first used with no upgrade at start-up, as when the database
    was unreachable then."""

    async def scenario() -> tuple[int, int, dict, dict]:
        client: AsyncMongoClient = AsyncMongoClient(database.uri)
        db = client[f"layout_{uuid.uuid4().hex[:8]}"]
        await prepare(db["Observation"])
        repository = Repository(client, db.name, ResourceIndexer(BASE))
        if not at_start:
            await repository.collection("Observation")
        first, again = await repository.upgrade_layout(), await repository.upgrade_layout()
        doc = await db["Observation"].find_one({"_id": "o1"})
        indexes = await db["Observation"].index_information()
        await client.drop_database(db.name)
        await client.close()
        assert doc is not None
        return first, again, doc, indexes

    return asyncio.run(scenario())


def test_an_old_layout_collection_is_reindexed_once(database: EmbeddedDatabase) -> None:
    async def prepare(coll: AsyncCollection) -> None:
        await coll.insert_one({**LIVE, "json": json.dumps(OBSERVATION).encode(), "k": ["flat"]})
        await coll.insert_one({"_id": "gone", "v": 2, "lu": AT, "m": "DELETE"})
        await coll.create_index([("k", ASCENDING)])
        await coll.create_index([("pat", ASCENDING), ("_id", ASCENDING)])

    first, again, doc, indexes = _upgrade(database, prepare)
    assert (first, again) == (1, 0), "one live document re-indexed, and only once"
    assert doc["k"] == ResourceIndexer(BASE).fields("Observation", OBSERVATION)["k"]
    assert doc["pat"] == ["p1"]
    keys = {spec["key"][0][0] for spec in indexes.values()}
    assert "k.v" in keys and "k" not in keys and "pat" not in keys


@pytest.mark.parametrize("at_start", [True, False], ids=["at start-up", "on first use"])
def test_keys_of_an_earlier_key_layout_are_rewritten(
    database: EmbeddedDatabase, at_start: bool
) -> None:
    """Subdocument keys written before the current key layout (an index on `k.v` by another
    name: here tokens with a patient-prefixed copy beside them) are computed again."""
    earlier = ["code\x1e8867-4\x1fhttp://loinc.org", "p1\x1dcode\x1e8867-4\x1fhttp://loinc.org"]

    async def prepare(coll: AsyncCollection) -> None:
        document = {**LIVE, "json": json.dumps(OBSERVATION).encode()}
        await coll.insert_one({**document, "k": [{"v": key} for key in earlier]})
        await coll.create_index([("k.v", ASCENDING)])

    first, again, doc, indexes = _upgrade(database, prepare, at_start)
    assert (first, again) == ((1, 0) if at_start else (0, 0))
    assert doc["k"] == ResourceIndexer(BASE).fields("Observation", OBSERVATION)["k"]
    assert {"v": "code\x1e8867-4\x1dp1\x1fhttp://loinc.org"} in doc["k"]
    names = {name for name, spec in indexes.items() if spec["key"][0][0] == "k.v"}
    assert names == {KEY_INDEX}
