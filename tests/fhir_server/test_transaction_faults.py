"""A transaction that fails inside the database leaves nothing behind (issue: bundles).

The database runs with test commands enabled, so MongoDB's `failCommand` failpoint can drop the
connection at the transaction's first insert or at its commit; the database process is then
killed outright and restarted, and not one resource of the bundle may exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from pymongo import MongoClient

from tests.support import TLS, EmbeddedDatabase, Server, wait_until

pytestmark = pytest.mark.slow
SYNTHEA = Path(__file__).resolve().parent.parent / "data" / "synthea"


class Deployment:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = self._database(root / "data")
        env = {"PHR_MONGODB_URI": self.db.uri, "PHR_DB_NAME": "faults", "PHR_DB_TIMEOUT_MS": "500"}
        self.server = Server(env, root / "server.log").start()

    def _database(self, path: Path, port: int | None = None) -> EmbeddedDatabase:
        return EmbeddedDatabase(path, port=port, extra_args=("--enable-test-commands",)).start()

    def kill_and_restart_database(self) -> None:
        assert self.db.process is not None
        self.db.process.kill()
        self.db.process.wait()
        self.db = self._database(self.db.data_dir, self.db.port)

    def fail(self, command: str, times: int) -> None:
        with MongoClient(self.db.uri) as c:
            c.admin.command(
                "configureFailPoint",
                "failCommand",
                mode={"times": times},
                data={"failCommands": [command], "closeConnection": True, "appName": "phr-server"},
            )

    def count(self, ids: dict[str, list[str]]) -> int:
        with MongoClient(self.db.uri) as c:
            db = c.faults
            return sum(db[t].count_documents({"_id": {"$in": rids}}) for t, rids in ids.items())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    d = Deployment(tmp_path_factory.mktemp("faults"))
    yield d
    d.server.stop()
    d.db.stop()


def fresh_bundle() -> tuple[bytes, dict[str, list[str]]]:
    """The Synthea bundle with new ids, as PUT entries (ids known in advance)."""
    bundle = json.loads(next(SYNTHEA.glob("*.json")).read_text())
    text = json.dumps(bundle)
    for e in bundle["entry"]:
        text = text.replace(e["resource"]["id"], str(uuid4()))
    bundle = json.loads(text)
    ids: dict[str, list[str]] = {}
    for e in bundle["entry"]:
        r = e["resource"]
        e["request"] = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        ids.setdefault(r["resourceType"], []).append(r["id"])
    return json.dumps(bundle).encode(), ids


@pytest.mark.parametrize("command", ["insert", "commitTransaction"])
def test_failure_inside_the_transaction_writes_nothing(deployment, command):
    body, ids = fresh_bundle()
    total = sum(len(v) for v in ids.values())
    deployment.fail(command, times=3)  # more than the driver's own single retry
    url = deployment.server.url + "/fhir"
    headers = {"Content-Type": "application/fhir+json"}
    r = httpx.post(
        url, content=body, headers=headers, verify=TLS, timeout=60, auth=deployment.server.auth()
    )
    assert r.status_code == 503, r.text[:300]
    assert r.headers["retry-after"]
    assert r.json()["resourceType"] == "OperationOutcome"
    deployment.fail(command, times=0)
    assert deployment.count(ids) == 0
    # the database dies with the aborted transaction's traces in its journal, and comes back
    deployment.kill_and_restart_database()
    assert deployment.count(ids) == 0

    def retried() -> httpx.Response | None:
        r = httpx.post(
            url,
            content=body,
            headers=headers,
            verify=TLS,
            timeout=60,
            auth=deployment.server.auth(),
        )
        return r if r.status_code == 200 else None

    wait_until(retried, 60, 0.2, "the server to recover and take the bundle")
    assert deployment.count(ids) == total
