"""The processes a bench run measures: a SecantusDB over a data directory and the server on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import httpx

from fhir_server.embedded import EmbeddedDatabase, free_port
from smart_auth.clients import ClientRegistry
from smart_auth.hashing import SecretHasher
from smart_auth.settings import AuthSettings
from smart_auth.store import AuthStore

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "phr_bench"
SCOPE = "system/*.cruds"  # a backend service that may do everything: the FHIR API's fastest path
TOKEN_LIFETIME = 3600  # seconds; a token is renewed when less than RENEW of it is left
RENEW = 600
BASIC: Final = "client_secret_basic"  # how the client authenticates (RFC 6749 section 2.3.1)


class Server:
    """`python -m fhir_server serve` with the bare routes, one worker."""

    def __init__(self, db_uri: str, log: Path, pin: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_uri = db_uri
        self._client: tuple[str, str] | None = None  # (client_id, secret)
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)
        env = {
            **os.environ,
            "PHR_MONGODB_URI": db_uri,
            "PHR_DB_NAME": DB_NAME,
            "PHR_BENCH_ROUTES": "1",
            "PHR_LOG_LEVEL": "WARNING",
            "PHR_PORT": str(self.port),
            "PHR_ACCESS_TOKEN_LIFETIME": str(TOKEN_LIFETIME),
        }
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*pin, sys.executable, "-m", "fhir_server", "serve"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start; see {log}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def bearer(self) -> tuple[tuple[str, str], ...]:
        """The `Authorization` header of a backend service (client_credentials, SCOPE), as every
        FHIR request needs one; the client is registered in the server's database on first use
        (as `python -m smart_auth clients add` would)."""
        if self._client is None:
            store = AuthStore.connect(AuthSettings(mongodb_uri=self.db_uri, db_name=DB_NAME))
            try:
                registry = ClientRegistry(store, SecretHasher("CHEAPEST"))
                client, secret = registry.register(
                    name="bench", token_endpoint_auth_method=BASIC, scope=SCOPE
                )
            finally:
                store.close()
            assert secret is not None
            self._client = (client.client_id, secret)
        if self._token is None or time.monotonic() > self._token[1] - RENEW:
            response = httpx.post(
                self.url + "/auth/token",
                data={"grant_type": "client_credentials", "scope": SCOPE},
                auth=self._client,
                timeout=30,
            )
            response.raise_for_status()
            body = response.json()
            self._token = (body["access_token"], time.monotonic() + float(body["expires_in"]))
        return (("Authorization", f"Bearer {self._token[0]}"),)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cache_size() -> str:
    """The WiredTiger cache mongod would take on this machine: 50% of (RAM - 1 GB), at least
    256 MB (https://www.mongodb.com/docs/manual/core/wiredtiger/#memory-use). SecantusDB's own
    default is 1 GB, which a 100,000-resource dataset outgrows: evictions then cost each insert
    more database CPU the more index entries it writes."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "1G"
    return f"{max(256, (ram // 2**20 - 1024) // 2)}M"


@contextmanager
def serving(
    db_dir: Path, log: Path, pin: list[str], retry_writes: bool = False
) -> Iterator[tuple[EmbeddedDatabase, Server]]:
    """A database over `db_dir` and the server on it, both stopped (in order) on exit."""
    with EmbeddedDatabase(db_dir, extra_args=("--cache-size", cache_size())) as db:
        # SecantusDB 0.7.0b3 scans (past 10,000: sorts) every retryable-write record on each
        # write, so with retryWrites the database slows down as writes accumulate; off by default.
        uri = db.uri.replace("&retryWrites=false", "")
        uri += "&retryWrites=" + ("true" if retry_writes else "false")
        server = Server(uri, log, pin)
        try:
            yield db, server
        finally:
            server.stop()
