"""Real processes for tests: a SecantusDB and the server, each on a free port."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

from fhir_server.embedded import EmbeddedDatabase, free_port
from smart_auth.clients import ClientRegistry
from smart_auth.hashing import SecretHasher
from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings
from smart_auth.store import AuthStore

ROOT = Path(__file__).resolve().parent.parent
# One TLS context for every test client (`verify=TLS`): httpx builds one per client otherwise,
# loading the CA bundle each time (~90 ms), even for the plain-HTTP servers of the tests.
TLS = ssl.create_default_context()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


class Server:
    """`python -m fhir_server serve` in a subprocess, as `make run` starts it."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, "PHR_LOG_LEVEL": "WARNING", **env, "PHR_PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._auth: BearerAuth | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"server exited; see {self.log}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1, verify=TLS).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> Server:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fhir_server", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, 60, what="the server to answer /healthz")
        return self

    def auth(self) -> BearerAuth:
        """Bearer tokens of a backend client with system/*.cruds, registered on first use in this
        server's database (found through the launcher's URI file when it is embedded)."""
        if self._auth is None:
            uri = self.env.get("PHR_MONGODB_URI")
            if not uri:
                data_dir = ROOT / self.env.get("PHR_DATA_DIR", "var/db")
                uri = data_dir.with_name(data_dir.name + ".uri").read_text().strip()
            token_url = self.url + "/auth/token"
            self._auth = BearerAuth(
                register_backend(uri, self.env.get("PHR_DB_NAME", "phr"), token_url)
            )
        return self._auth

    def token(self, scope: str, **context: str | None) -> str:
        """`mint_token` for this server (patient=..., fhir_user=...)."""
        uri = self.env["PHR_MONGODB_URI"]
        return mint_token(uri, self.env.get("PHR_DB_NAME", "phr"), self.port, scope, **context)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class BackendClient:
    """A registered confidential client (client_secret_basic) of a running server."""

    client_id: str
    secret: str
    token_url: str
    scope: str


def register_backend(
    uri: str, db_name: str, token_url: str, scope: str = "system/*.cruds", name: str = "tests"
) -> BackendClient:
    """Register a client_credentials client straight in the server's database (as the
    `python -m smart_auth clients add` CLI does)."""
    store = AuthStore.connect(AuthSettings(mongodb_uri=uri, db_name=db_name))
    try:
        registry = ClientRegistry(store, SecretHasher("CHEAPEST"))
        client, secret = registry.register(
            name=name, token_endpoint_auth_method="client_secret_basic", scope=scope
        )
    finally:
        store.close()
    assert secret is not None
    return BackendClient(client.client_id, secret, token_url, scope)


def mint_token(
    uri: str,
    db_name: str,
    port: int,
    scope: str,
    *,
    patient: str | None = None,
    fhir_user: str | None = None,
    client_id: str = "tests",
    lifetime: int | None = None,
) -> str:
    """An access token signed with the server's own keys (in its database), as its token
    endpoint would issue after an authorization: for tests of enforcement, which need patient
    and user contexts without driving a login each time (the flows are tested in smart_auth)."""
    services = AuthServices.create(AuthSettings(mongodb_uri=uri, db_name=db_name, port=port))
    try:
        token, _ = services.tokens.mint(
            audience=services.fhir_base,
            client_id=client_id,
            subject=fhir_user or client_id,
            scope=scope,
            patient=patient,
            fhir_user=fhir_user,
            lifetime=lifetime,
        )
    finally:
        services.close()
    return token


class BearerAuth(httpx.Auth):
    """Bearer tokens from client_credentials, renewed shortly before they expire."""

    def __init__(self, client: BackendClient, scope: str | None = None) -> None:
        self.client = client
        self.scope = scope
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() > self._expires - 30:
                form = {
                    "grant_type": "client_credentials",
                    "scope": self.scope or self.client.scope,
                }
                response = httpx.post(
                    self.client.token_url,
                    data=form,
                    auth=(self.client.client_id, self.client.secret),
                    timeout=30,
                )
                response.raise_for_status()
                body = response.json()
                self._token = body["access_token"]
                self._expires = time.monotonic() + float(body["expires_in"])
            return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def auth_flow(self, request: httpx.Request):  # type: ignore[override]
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


@contextmanager
def serving(app: ASGIApp, port: int) -> Iterator[None]:
    """uvicorn in a thread on `port` for the block."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, what="uvicorn to start")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(30)


__all__ = [
    "TLS",
    "BackendClient",
    "BearerAuth",
    "EmbeddedDatabase",
    "Server",
    "free_port",
    "mint_token",
    "register_backend",
    "serving",
    "wait_until",
]
