"""A database written in the earlier storage layout (flat `k` strings, a `pat` index) is brought to
the current one at start-up (`Repository.upgrade_layout`, docs/storage.md), so its resources stay
searchable."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

from pymongo import ASCENDING, AsyncMongoClient

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


def test_an_old_layout_collection_is_reindexed_once(database: EmbeddedDatabase) -> None:
    async def scenario() -> tuple[int, int, dict, dict]:
        client: AsyncMongoClient = AsyncMongoClient(database.uri)
        db = client[f"layout_{uuid.uuid4().hex[:8]}"]
        coll = db["Observation"]
        at = datetime(2026, 11, 1, tzinfo=UTC)
        common = {"v": 1, "lu": at, "m": "POST", "pat": ["p1"]}
        await coll.insert_one(
            {"_id": "o1", **common, "json": json.dumps(OBSERVATION).encode(), "k": ["flat"]}
        )
        await coll.insert_one({"_id": "gone", "v": 2, "lu": at, "m": "DELETE"})
        await coll.create_index([("k", ASCENDING)])
        await coll.create_index([("pat", ASCENDING), ("_id", ASCENDING)])
        indexer = ResourceIndexer(BASE)
        repository = Repository(client, db.name, indexer)
        first, again = await repository.upgrade_layout(), await repository.upgrade_layout()
        doc = await coll.find_one({"_id": "o1"})
        indexes = await coll.index_information()
        await client.drop_database(db.name)
        await client.close()
        assert doc is not None
        return (
            first,
            again,
            doc,
            {"indexes": indexes, "fields": indexer.fields("Observation", OBSERVATION)},
        )

    first, again, doc, seen = asyncio.run(scenario())
    assert (first, again) == (1, 0), "one live document re-indexed, and only once"
    assert doc["k"] == seen["fields"]["k"] and doc["pat"] == ["p1"]
    keys = {spec["key"][0][0] for spec in seen["indexes"].values()}
    assert "k.v" in keys and "k" not in keys and "pat" not in keys


def test_keys_of_an_earlier_key_layout_are_rewritten(database: EmbeddedDatabase) -> None:
    """Subdocument keys written before the current key layout (an index on `k.v` by another
    name: here tokens with a patient-prefixed copy beside them) are computed again."""

    async def scenario() -> tuple[int, int, dict, dict, dict]:
        client: AsyncMongoClient = AsyncMongoClient(database.uri)
        db = client[f"layout_{uuid.uuid4().hex[:8]}"]
        coll = db["Observation"]
        at = datetime(2026, 11, 1, tzinfo=UTC)
        earlier = ["code\x1e8867-4\x1fhttp://loinc.org", "p1\x1dcode\x1e8867-4\x1fhttp://loinc.org"]
        await coll.insert_one(
            {
                "_id": "o1",
                "v": 1,
                "lu": at,
                "m": "POST",
                "pat": ["p1"],
                "json": json.dumps(OBSERVATION).encode(),
                "k": [{"v": key} for key in earlier],
            }
        )
        await coll.create_index([("k.v", ASCENDING)])
        indexer = ResourceIndexer(BASE)
        repository = Repository(client, db.name, indexer)
        first, again = await repository.upgrade_layout(), await repository.upgrade_layout()
        doc = await coll.find_one({"_id": "o1"})
        indexes = await coll.index_information()
        await client.drop_database(db.name)
        await client.close()
        assert doc is not None
        return first, again, doc, indexes, indexer.fields("Observation", OBSERVATION)

    first, again, doc, indexes, fields = asyncio.run(scenario())
    assert (first, again) == (1, 0)
    assert doc["k"] == fields["k"]
    assert {"v": "code\x1e8867-4\x1dp1\x1fhttp://loinc.org"} in doc["k"]
    names = {name for name, spec in indexes.items() if spec["key"][0][0] == "k.v"}
    assert names == {KEY_INDEX}
