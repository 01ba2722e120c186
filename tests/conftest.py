"""Session fixtures: one real SecantusDB and one real server process for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import TLS, BearerAuth, EmbeddedDatabase, Server


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedDatabase]:
    db = EmbeddedDatabase(tmp_path_factory.mktemp("secantus") / "data").start()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def server(
    database: EmbeddedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    srv = Server({"PHR_MONGODB_URI": database.uri, "PHR_DB_NAME": "phr_test"}, log)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def system_auth(server: Server) -> BearerAuth:
    """A backend service's token with every permission on every resource (system/*.cruds)."""
    return server.auth()


@pytest.fixture(scope="session")
def fhir_base(server: Server) -> str:
    return f"http://localhost:{server.port}/fhir"


@pytest.fixture
def client(server: Server, system_auth: BearerAuth) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/fhir", timeout=30, verify=TLS, auth=system_auth) as c:
        yield c
