"""Client registry and its CLI: what may be registered, how secrets are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from smart_auth import hashing
from smart_auth.cache import Recent
from smart_auth.clients import RegistrationError
from smart_auth.hashing import SecretHasher, VerifiedSecrets
from tests.smart_auth.conftest import AuthServer
from tests.smart_auth.helpers import basic, es384_key, public_jwks, rs384_key
from tests.support import ROOT

P256 = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}
with warnings.catch_warnings(action="ignore"):  # joserfc warns about the small key: the point
    RSA1024 = {"keys": [RSAKey.generate_key(1024).as_dict(private=False)]}

REFUSED: dict[str, dict[str, Any]] = {
    "client_id with a space": {"client_id": "a b"},
    "client_id with a colon": {"client_id": "a:b"},
    "unknown auth method": {"token_endpoint_auth_method": "client_secret_jwt"},
    "empty name": {"name": " "},
    "http redirect": {"redirect_uris": ["http://app.example.com/cb"]},
    "redirect with fragment": {"redirect_uris": ["https://app.example.com/cb#x"]},
    "wildcard redirect": {"redirect_uris": ["https://*.example.com/cb"]},
    "javascript redirect": {"redirect_uris": ["javascript:alert(1)"]},
    "localhost by name": {"redirect_uris": ["http://localhost:8000/cb"]},
    "unknown grant": {"grant_types": ["password"]},
    "unknown scope": {"scope": "system/*.rs superuser"},
    "no scope": {"scope": " "},
    "jwks for a secret client": {"jwks": {"keys": []}},
    "private_key_jwt without jwks": {"token_endpoint_auth_method": "private_key_jwt"},
    "private key in jwks": {
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [es384_key().as_dict(private=True)]},
    },
    "P-256 key": {"token_endpoint_auth_method": "private_key_jwt", "jwks": P256},
    "RSA 1024": {"token_endpoint_auth_method": "private_key_jwt", "jwks": RSA1024},
    "empty jwks": {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}},
    "jwks not a set": {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"kty": "EC"}},
    "public client_credentials": {
        "token_endpoint_auth_method": "none",
        "grant_types": ["client_credentials"],
    },
}


@pytest.mark.filterwarnings("ignore:Key size should be")
@pytest.mark.parametrize("case", REFUSED)
def test_registration_is_refused(auth_server: AuthServer, case: str) -> None:
    values: dict[str, Any] = {
        "name": "app",
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "system/*.rs",
        **REFUSED[case],
    }
    with pytest.raises(RegistrationError):
        auth_server.services.clients.register(**values)


@pytest.mark.parametrize(
    "uri", ["https://app.example.com/cb", "http://127.0.0.1:8123/cb", "http://[::1]/cb"]
)
def test_allowed_redirect_uris(auth_server: AuthServer, uri: str) -> None:
    client, _ = auth_server.services.clients.register(
        name="app", token_endpoint_auth_method="none", scope="patient/*.rs", redirect_uris=[uri]
    )
    assert client.check_redirect_uri(uri) and not client.check_redirect_uri(uri + "/")


def test_duplicate_client_id_is_refused(auth_server: AuthServer) -> None:
    registry = auth_server.services.clients
    registry.register(
        name="a", token_endpoint_auth_method="none", scope="patient/*.rs", client_id="dup-id"
    )
    with pytest.raises(RegistrationError, match="already registered"):
        registry.register(
            name="b", token_endpoint_auth_method="none", scope="patient/*.rs", client_id="dup-id"
        )


def test_secret_is_stored_only_as_an_argon2_hash(auth_server: AuthServer) -> None:
    client, secret = auth_server.services.clients.register(
        name="s", token_endpoint_auth_method="client_secret_basic", scope="system/*.rs"
    )
    assert secret and len(secret) >= 40
    doc = auth_server.services.store.clients.find_one({"_id": client.client_id})
    assert doc is not None
    assert doc["secret_hash"].startswith("$argon2id$")
    assert secret not in json.dumps(doc, default=str)
    loaded = auth_server.services.clients.get(client.client_id)
    assert loaded is not None and loaded.check_client_secret(secret)
    assert not loaded.check_client_secret(secret[:-1])


def test_private_key_jwt_client_keeps_public_keys_with_kids(auth_server: AuthServer) -> None:
    es, rs = es384_key(), rs384_key()
    jwks = public_jwks(es, rs)
    for key in jwks["keys"]:
        del key["kid"]  # the registry derives RFC 7638 thumbprints
    client, secret = auth_server.services.clients.register(
        name="k", token_endpoint_auth_method="private_key_jwt", scope="system/*.rs", jwks=jwks
    )
    assert secret is None
    assert client.jwks is not None
    assert [k["kid"] for k in client.jwks["keys"]] == [es.thumbprint(), rs.thumbprint()]


def _cli(auth_server: AuthServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PHR_MONGODB_URI": auth_server.settings.mongodb_uri or "",
        "PHR_DB_NAME": auth_server.settings.db_name,
        "PHR_ARGON2_PROFILE": "CHEAPEST",
    }
    return subprocess.run(
        [sys.executable, "-m", "smart_auth", "clients", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_registers_a_client_whose_secret_works_once_printed(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    added = _cli(
        auth_server, "add", "--name", "CLI app", "--auth-method", "client_secret_basic",
        "--scope", "system/Patient.rs", "--client-id", "cli-app",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    printed = json.loads(added.stdout)
    assert printed["client_id"] == "cli-app" and printed["client_secret"]
    assert "not shown again" in added.stderr

    listed = _cli(auth_server, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entry = next(c for c in json.loads(listed.stdout) if c["client_id"] == "cli-app")
    assert "client_secret" not in entry and printed["client_secret"] not in listed.stdout

    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    r = http.post("/auth/token", data=form, headers=basic("cli-app", printed["client_secret"]))
    assert r.status_code == 200, r.text


def test_cli_refuses_a_bad_registration(auth_server: AuthServer) -> None:
    refused = _cli(
        auth_server,
        "add",
        "--name",
        "x",
        "--auth-method",
        "private_key_jwt",
        "--scope",
        "system/*.rs",
    )
    assert refused.returncode == 1 and "refused" in refused.stderr


def test_verified_secrets_remember_only_the_right_secret_for_a_while():
    seen = VerifiedSecrets(ttl=0.2, size=2)
    assert not seen.recalls("hash-a", "s3cret")
    seen.remember("hash-a", "s3cret")
    assert seen.recalls("hash-a", "s3cret")
    assert not seen.recalls("hash-a", "wrong")
    assert not seen.recalls("hash-b", "s3cret"), "keyed by the stored hash: a rotated secret"
    seen.remember("hash-b", "x")
    seen.remember("hash-c", "y")  # bounded: the oldest goes
    assert not seen.recalls("hash-a", "s3cret")
    time.sleep(0.25)
    assert not seen.recalls("hash-c", "y"), "forgotten after the ttl"


def test_a_client_removed_elsewhere_is_refused_within_a_second(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    """The registry remembers what it read for at most a second (cache.py)."""
    services = auth_server.services
    client, secret = services.clients.register(
        name="short-lived", token_endpoint_auth_method="client_secret_basic", scope="system/*.rs"
    )
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    headers = basic(client.client_id, secret)
    assert http.post("/auth/token", data=form, headers=headers).status_code == 200
    services.store.clients.delete_one({"_id": client.client_id})  # e.g. by another worker
    time.sleep(1.05)
    assert http.post("/auth/token", data=form, headers=headers).status_code == 401


def test_recent_remembers_for_a_while_and_forgets_on_demand():
    loads: list[str] = []

    def load(key: str):
        return lambda: loads.append(key) or f"value of {key}"

    recent: Recent[str, str] = Recent(staleness=0.2, size=2)
    assert recent.fetch("a", load("a")) == "value of a"
    assert recent.fetch("a", load("a")) == "value of a" and loads == ["a"]
    recent.forget("a")
    recent.fetch("a", load("a"))
    recent.fetch("b", load("b"))
    recent.fetch("c", load("c"))  # bounded: the oldest ("a") goes
    recent.fetch("a", load("a"))
    assert loads == ["a", "a", "b", "c", "a"]
    time.sleep(0.25)
    recent.fetch("c", load("c"))
    assert loads[-1] == "c", "read again after the staleness bound"


def test_concurrent_identical_secrets_pay_argon2_once_and_wrong_ones_every_time(monkeypatch):
    hashed = SecretHasher("CHEAPEST").hash("s3cret")
    calls: list[str] = []
    real = hashing.verify_secret

    def counted(secret_hash: str, secret: str) -> bool:
        calls.append(secret)
        time.sleep(0.05)  # as long as a real verification, so the attempts overlap
        return real(secret_hash, secret)

    monkeypatch.setattr(hashing, "verify_secret", counted)
    seen = VerifiedSecrets()
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda _: seen.check(hashed, "s3cret"), range(8)))
        assert not any(pool.map(lambda _: seen.check(hashed, "wrong"), range(4)))
    assert calls == ["s3cret"] + ["wrong"] * 4
