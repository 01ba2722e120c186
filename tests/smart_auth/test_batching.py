"""`GroupInsert` (smart_auth/batching.py) against the real database: every caller learns its own
outcome, concurrent callers share writes, and database errors reach the callers."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from smart_auth.batching import GroupInsert
from tests.support import EmbeddedDatabase


@pytest.fixture
def collection(database: EmbeddedDatabase) -> Any:
    client: MongoClient[dict[str, Any]] = MongoClient(database.uri)
    yield client["batching"][uuid.uuid4().hex]
    client.close()


class Counting:
    """The collection, counting the `insert_many` calls that reach it."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.calls = 0
        self.lock = threading.Lock()

    def insert_many(self, docs: list[dict[str, Any]], ordered: bool) -> Any:
        with self.lock:
            self.calls += 1
        return self.collection.insert_many(docs, ordered=ordered)


def test_a_duplicate_id_is_false_for_its_caller_only(collection: Any) -> None:
    group = GroupInsert(collection)
    assert group.insert({"_id": "a"}) is True
    assert group.insert({"_id": "a"}) is False
    assert group.insert({"_id": "b"}) is True
    assert sorted(d["_id"] for d in collection.find()) == ["a", "b"]


def test_concurrent_callers_share_writes_and_exactly_one_wins_each_id(collection: Any) -> None:
    counting = Counting(collection)
    group = GroupInsert(counting)  # type: ignore[arg-type]
    ids = [f"u{n}" for n in range(120)] + ["same"] * 40  # 40 callers race for one id
    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(lambda i: (i, group.insert({"_id": i})), ids))
    assert all(ok for i, ok in outcomes if i != "same")
    assert sum(ok for i, ok in outcomes if i == "same") == 1
    assert collection.count_documents({}) == 121
    assert counting.calls < len(ids), "concurrent inserts were grouped"


def test_a_database_error_reaches_every_caller_of_the_batch() -> None:
    unreachable: MongoClient[dict[str, Any]] = MongoClient(
        "mongodb://127.0.0.1:9", serverSelectionTimeoutMS=200
    )
    group = GroupInsert(unreachable["x"]["y"])
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(group.insert, {"_id": n}) for n in range(4)]
    for future in futures:
        with pytest.raises(PyMongoError):
            future.result()
    unreachable.close()
