"""The database going away and coming back: 503 with Retry-After, no partial write, and the same
server recovering by itself (ARCHITECTURE.md item 10)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from uuid import uuid4

import httpx
import orjson
import pytest

from tests.fhir_server.helpers import (
    FHIR,
    PATCH,
    assert_outcome,
    create,
    history_count,
    last_write,
)
from tests.support import TLS, EmbeddedDatabase, Server, free_port, wait_until

pytestmark = pytest.mark.slow

TIMEOUT_MS = "300"  # how long a request waits for the database before answering 503


class Deployment:
    """A database and a server of this module's own, so stopping it disturbs no other test."""

    def __init__(self, root) -> None:
        self.db = EmbeddedDatabase(root / "data").start()
        env = {
            "PHR_MONGODB_URI": self.db.uri,
            "PHR_DB_NAME": "outage",
            "PHR_DB_TIMEOUT_MS": TIMEOUT_MS,
        }
        self.server = Server(env, root / "server.log").start()

    def restart_database(self) -> None:
        """The database again, on the same port and data directory."""
        self.db = EmbeddedDatabase(self.db.data_dir, port=self.db.port).start()


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("outage"))
    yield deployment
    deployment.server.stop()
    deployment.db.stop()


@pytest.fixture
def fhir(own) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=own.server.url + "/fhir", verify=TLS, timeout=30, auth=own.server.auth()
    ) as c:
        yield c


def ready(server: Server) -> bool:
    return httpx.get(server.url + "/readyz", verify=TLS, timeout=5).status_code == 200


def outage_requests(existing: str, new_id: str) -> dict[str, tuple[str, str, bytes | None, str]]:
    patient = orjson.dumps({"resourceType": "Patient", "id": new_id})
    ops = orjson.dumps([{"op": "replace", "path": "/active", "value": False}])
    return {
        "read": ("GET", existing, None, FHIR),
        "vread": ("GET", f"{existing}/_history/1", None, FHIR),
        "instance history": ("GET", f"{existing}/_history", None, FHIR),
        "type history": ("GET", "/Patient/_history", None, FHIR),
        "system history": ("GET", "/_history", None, FHIR),
        "create": ("POST", "/Patient", b'{"resourceType":"Patient"}', FHIR),
        "update-as-create": ("PUT", f"/Patient/{new_id}", patient, FHIR),
        "patch": ("PATCH", existing, ops, PATCH),
        "delete": ("DELETE", existing, None, FHIR),
    }


def test_outage_is_503_and_the_server_recovers(own, fhir):
    server = own.server
    resource = create(fhir, {"resourceType": "Patient", "active": True})
    existing = f"/Patient/{resource['id']}"
    before = last_write(fhir)
    new_id = uuid4().hex

    own.db.stop()
    try:
        for name, (method, url, body, content_type) in outage_requests(existing, new_id).items():
            r = fhir.request(method, url, content=body, headers={"Content-Type": content_type})
            assert_outcome(r, 503, "unavailable", code="transient")
            assert r.headers["retry-after"].isdigit(), name
        readyz = httpx.get(server.url + "/readyz", verify=TLS, timeout=10)
        assert readyz.status_code == 503
        assert "retry-after" in readyz.headers
        assert httpx.get(server.url + "/healthz", verify=TLS, timeout=10).status_code == 200
        assert fhir.get("/metadata").status_code == 200, "metadata needs no database"
    finally:
        own.restart_database()

    wait_until(lambda: ready(server), 30, 0.1, "the server to see the database again")
    read = fhir.get(existing)
    assert read.status_code == 200
    assert read.json() == resource, "data written before the outage is intact"
    assert history_count(fhir, existing) == 1, "the patch and delete left nothing"
    assert fhir.get(f"/Patient/{new_id}").status_code == 404, "the update left nothing"
    assert last_write(fhir) == before, "no write during the outage left a version"
    assert create(fhir, {"resourceType": "Patient"})["meta"]["versionId"] == "1"


def test_server_started_without_its_database_serves_once_it_appears(own, tmp_path):
    port = free_port()
    env = {
        "PHR_MONGODB_URI": f"mongodb://127.0.0.1:{port}/?directConnection=true",
        "PHR_DB_NAME": "outage",
        "PHR_DB_TIMEOUT_MS": TIMEOUT_MS,
    }
    server = Server(env, tmp_path / "server.log").start()
    late = None
    try:
        assert httpx.get(server.url + "/readyz", verify=TLS, timeout=10).status_code == 503
        # a token whose key is not cached yet cannot be checked without the database: 503, not 401
        header = base64.urlsafe_b64encode(b'{"alg":"ES256","typ":"at+jwt","kid":"k1"}').rstrip(b"=")
        unchecked = {"Authorization": f"Bearer {header.decode()}.e30.c2ln"}
        r = httpx.post(
            server.url + "/fhir/Patient",
            content=b'{"resourceType":"Patient"}',
            headers={**unchecked, "Content-Type": FHIR},
            timeout=30,
        )
        assert_outcome(r, 503, code="transient")
        late = EmbeddedDatabase(tmp_path / "data", port=port).start()
        wait_until(lambda: ready(server), 30, 0.1, "the server to find the database")
        with httpx.Client(
            base_url=server.url + "/fhir", verify=TLS, timeout=30, auth=server.auth()
        ) as c:
            created = create(c, {"resourceType": "Patient", "active": True})
            assert c.get(f"/Patient/{created['id']}").json() == created
            history = c.get(f"/Patient/{created['id']}/_history").json()
            assert history["total"] == 1
    finally:
        server.stop()
        if late is not None:
            late.stop()
    assert ready(own.server), "the module's own server is unaffected"
