"""The W3 and W4 baselines write what the server writes: the same documents with the same search
keys (so the same index entries), W4's under fresh ids each time. Only the FHIR work (validation,
key extraction, reference resolution, the transaction) is left out."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from pymongo import MongoClient
from pymongo.database import Database

from bench import dataset
from bench.harness import observations
from tests.support import TLS, EmbeddedDatabase, Server

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DB = "phr_w4_baseline"


@pytest.fixture(scope="module")
def bench_server(
    database: EmbeddedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("bench-server") / "server.log"
    env = {"PHR_MONGODB_URI": database.uri, "PHR_DB_NAME": DB, "PHR_BENCH_ROUTES": "1"}
    srv = Server(env, log).start()
    yield srv
    srv.stop()


def _smallest_bundle() -> bytes:
    source = min(dataset.sources(), key=lambda s: s.entries)
    return dataset.clone(source.text)


def _written(database: EmbeddedDatabase, before: dict[str, set[str]]) -> list[dict[str, Any]]:
    """The current-version documents written since `before` (ids per type)."""
    db: Database[dict[str, Any]] = MongoClient(database.uri)[DB]
    docs = []
    for name in db.list_collection_names():
        if name[:1].isupper():
            docs += [d for d in db[name].find() if d["_id"] not in before.get(name, set())]
    return docs


def _ids(database: EmbeddedDatabase) -> dict[str, set[str]]:
    db: Database[dict[str, Any]] = MongoClient(database.uri)[DB]
    return {n: {d["_id"] for d in db[n].find({}, {"_id": 1})} for n in db.list_collection_names()}


def _shapes(docs: list[dict[str, Any]]) -> Counter[tuple[str, ...]]:
    """Each document's stored keys and compartment, ids blanked."""
    return Counter(
        tuple(sorted(_UUID.sub("<id>", k["v"]) for k in doc.get("k", ())))
        + tuple(_UUID.sub("<id>", p) for p in doc.get("pat", ()))
        for doc in docs
    )


def _written_by(
    server: Server, database: EmbeddedDatabase, path: str, body: bytes, status: int
) -> list[dict[str, Any]]:
    """The documents one POST of `body` to `path` writes (`/fhir...` with a token)."""
    before = _ids(database)
    fhir = path.startswith("/fhir")
    answer = httpx.post(
        server.url + path,
        content=body,
        headers={"Content-Type": "application/fhir+json" if fhir else "application/json"},
        auth=server.auth() if fhir else None,
        verify=TLS,
        timeout=60,
    )
    assert answer.status_code == status, answer.text
    return _written(database, before)


def test_the_baseline_writes_the_servers_documents_and_keys(
    bench_server: Server, database: EmbeddedDatabase
) -> None:
    bundle = _smallest_bundle()
    keyed = dataset.resolved(bundle, keys=True)
    by_server = _written_by(bench_server, database, "/fhir", bundle, 200)
    # The same body twice: fresh ids, so no duplicate key.
    by_baseline = [
        doc
        for _ in range(2)
        for doc in _written_by(bench_server, database, "/bare/_ingest", keyed, 200)
    ]

    assert len(by_baseline) == 2 * len(by_server)
    assert _shapes(by_baseline) == _shapes(by_server) + _shapes(by_server)
    # Fresh, consistent ids: each document's key names its own patient, not the posted one.
    sent = set(_UUID.findall(keyed.decode()))
    for doc in by_baseline:
        assert doc["_id"] not in sent
        assert all(p not in sent for p in doc["pat"])
    patients = {
        d["_id"] for d in by_baseline if orjson.loads(d["json"])["resourceType"] == "Patient"
    }
    assert {p for d in by_baseline for p in d["pat"]} == patients


def test_the_keyless_variant_writes_no_keys(
    bench_server: Server, database: EmbeddedDatabase
) -> None:
    body = dataset.resolved(_smallest_bundle(), keys=False)
    docs = _written_by(bench_server, database, "/bare/_ingest", body, 200)
    assert docs and all("k" not in d and d["pat"] == [] for d in docs)


def test_bench_routes_are_absent_without_the_setting(client: httpx.Client, server: Server) -> None:
    answer = httpx.post(server.url + "/bare/_ingest", content=b"[]", verify=TLS, timeout=10)
    assert answer.status_code == 404


def test_the_create_baseline_writes_the_servers_keys(
    bench_server: Server, database: EmbeddedDatabase
) -> None:
    observation = observations(1)[0]
    by_server = _written_by(bench_server, database, "/fhir/Observation", observation, 201)
    body = orjson.dumps(dataset.baseline_item(orjson.loads(observation), keys=True))
    by_baseline = _written_by(bench_server, database, "/bare/Observation", body, 201)
    assert len(by_server) == len(by_baseline) == 1
    assert by_baseline[0]["k"] == by_server[0]["k"]
    assert by_baseline[0]["pat"] == by_server[0]["pat"]
