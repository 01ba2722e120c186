"""End-to-end journeys against the session's real server: apps, accounts and patients are made
straight in its database (as the `python -m smart_auth` CLIs do) or through its FHIR API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings
from tests.flows.journey import Person, create_person
from tests.support import EmbeddedDatabase, Server


@pytest.fixture(scope="session")
def auth_services(server: Server, database: EmbeddedDatabase) -> Iterator[AuthServices]:
    """The server's client registry and accounts, on its own database."""
    settings = AuthSettings(
        mongodb_uri=database.uri,
        db_name=server.env["PHR_DB_NAME"],
        port=server.port,
        argon2_profile="CHEAPEST",
    )
    services = AuthServices.create(settings)
    yield services
    services.close()


@pytest.fixture(scope="session")
def public_base(server: Server) -> str:
    """The server's public URL (what discovery advertises and tokens are issued for)."""
    return f"http://localhost:{server.port}"


@pytest.fixture
def person(client: httpx.Client, auth_services: AuthServices) -> Person:
    return create_person(client, auth_services, "Alice")


@pytest.fixture
def other(client: httpx.Client, auth_services: AuthServices) -> Person:
    return create_person(client, auth_services, "Bob")
