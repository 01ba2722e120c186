"""An authorization server built from `auth_router` on the real SecantusDB, served over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import Key

from smart_auth.clients import Client
from smart_auth.router import auth_router
from smart_auth.sealing import new_key
from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings
from smart_auth.tokens import TokenService
from tests.smart_auth.browser import FAMILY, Browser
from tests.smart_auth.helpers import assertion, assertion_form, es384_key, public_jwks, rs384_key
from tests.support import TLS, EmbeddedDatabase, free_port, serving


def auth_settings(database: EmbeddedDatabase, port: int, **overrides: object) -> AuthSettings:
    values: dict[str, object] = {
        "mongodb_uri": database.uri,
        "db_name": f"auth_{uuid.uuid4().hex[:12]}",
        "base_url": f"http://127.0.0.1:{port}",
        "argon2_profile": "CHEAPEST",
        "secret_key": new_key(),  # one per database, as a deployment has one
        **overrides,
    }
    return AuthSettings(**values)  # type: ignore[arg-type]


def auth_app(services: AuthServices) -> FastAPI:
    """What `create_app()` will do: start the services in the lifespan, mount the router."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        yield
        services.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None)
    app.include_router(auth_router(services))
    return app


@dataclass
class AuthServer:
    url: str
    settings: AuthSettings
    services: AuthServices

    @property
    def token_url(self) -> str:
        return self.settings.token_endpoint

    @property
    def fhir_base(self) -> str:
        return self.settings.fhir_base


@dataclass
class BackendClient:
    client: Client
    es384: Key
    rs384: Key

    @property
    def client_id(self) -> str:
        return self.client.client_id


@pytest.fixture(scope="session")
def auth_server(database: EmbeddedDatabase) -> Iterator[AuthServer]:
    port = free_port()
    # Every test logs in from 127.0.0.1: the per-IP throttle has its own server (test_login.py).
    settings = auth_settings(database, port, login_max_failures_per_ip=100_000)
    services = AuthServices.create(settings, directory=FAMILY)
    with serving(auth_app(services), port):
        yield AuthServer(f"http://127.0.0.1:{port}", settings, services)


@pytest.fixture
def http(auth_server: AuthServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=auth_server.url, timeout=30, verify=TLS) as c:
        yield c


@pytest.fixture
def backend(auth_server: AuthServer) -> BackendClient:
    """A backend-services client with one ES384 and one RS384 key, as Inferno registers."""
    es, rs = es384_key(), rs384_key()
    client, _ = auth_server.services.clients.register(
        name="backend",
        token_endpoint_auth_method="private_key_jwt",
        scope="system/Patient.rs system/Observation.rs system/Encounter.read",
        jwks=public_jwks(es, rs),
    )
    return BackendClient(client, es, rs)


@pytest.fixture
def secret_client(auth_server: AuthServer) -> tuple[Client, str]:
    client, secret = auth_server.services.clients.register(
        name="symmetric", token_endpoint_auth_method="client_secret_basic", scope="system/*.rs"
    )
    assert secret
    return client, secret


@pytest.fixture
def resource_server(auth_server: AuthServer) -> tuple[Client, str]:
    client, secret = auth_server.services.clients.register(
        name="resource server",
        token_endpoint_auth_method="client_secret_basic",
        scope="system/*.rs",
        resource_server=True,
    )
    assert secret
    return client, secret


def issue(http: httpx.Client, server: AuthServer, backend: BackendClient) -> str:
    signed = assertion(backend.es384, backend.client_id, server.token_url)
    r = http.post("/auth/token", data=assertion_form(signed, "system/Patient.rs"))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def shifted(server: AuthServer, seconds: float, issuer: str | None = None) -> TokenService:
    """The same keys and denylist, seen from a clock `seconds` away (or another issuer)."""
    tokens = server.services.tokens
    return TokenService(
        tokens.keys,
        tokens.denylist,
        issuer=issuer or tokens.issuer,
        lifetime=tokens.lifetime,
        leeway=tokens.leeway,
        clock=lambda: time.time() + seconds,
    )


@pytest.fixture
def browser(auth_server: AuthServer) -> Iterator[Browser]:
    """One user agent (cookies, pages) for the authorization pages."""
    b = Browser(auth_server.url)
    yield b
    b.close()
