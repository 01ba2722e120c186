"""Signing keys: stored, rotated, old kids verifying until their tokens die, public JWKS."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from pymongo import MongoClient

from smart_auth.keys import ACCESS_TOKEN, ID_TOKEN, KeyRing, private_jwk
from smart_auth.revocation import Denylist
from smart_auth.sealing import Sealer, SealError
from smart_auth.store import AuthStore
from smart_auth.tokens import InvalidToken, TokenService
from tests.smart_auth.conftest import AuthServer
from tests.smart_auth.helpers import jwt_parts
from tests.support import EmbeddedDatabase

AUD = "https://phr.example/fhir"
PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Worker:
    """One process's view: its own caches over the shared store."""

    def __init__(self, store: AuthStore, clock: FakeClock) -> None:
        self.keys = KeyRing(
            store, rotation_period=100, verify_grace=400, cache_seconds=60, miss_refresh_interval=0
        )
        self.tokens = TokenService(
            self.keys,
            Denylist(store, 0.5),
            issuer="https://phr.example",
            lifetime=300,
            leeway=0,
            clock=clock,
        )

    def mint(self) -> str:
        return self.tokens.mint(audience=AUD, client_id="c", subject="c", scope="system/*.rs")[0]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(database: EmbeddedDatabase, clock: FakeClock) -> Iterator[AuthStore]:
    client: MongoClient = MongoClient(database.uri, tz_aware=True)
    store = AuthStore(
        client, f"keys_{uuid.uuid4().hex[:12]}", Sealer(secrets.token_bytes(32)), clock
    )
    store.ensure_indexes()
    store.ensure_indexes()  # idempotent
    yield store
    store.close()


def kid(token: str) -> str:
    return jwt_parts(token)[0]["kid"]


def test_rotation_keeps_old_kids_verifying_until_their_tokens_expire(
    store: AuthStore, clock: FakeClock
) -> None:
    worker = Worker(store, clock)
    first = worker.mint()
    assert kid(worker.mint()) == kid(first)  # same key within the period

    clock.advance(150)  # past the 100 s rotation period
    second = worker.mint()
    assert kid(second) != kid(first)
    assert worker.tokens.verify(first, AUD).jti  # still alive (300 s lifetime), still verifies
    assert worker.tokens.verify(second, AUD).jti
    published = {k["kid"] for k in worker.keys.jwks()["keys"]}
    assert {kid(first), kid(second)} <= published

    clock.advance(400)  # the first key is past active_until + grace; its tokens are long dead
    worker.keys.refresh()
    assert kid(first) not in {k["kid"] for k in worker.keys.jwks()["keys"]}
    with pytest.raises(InvalidToken):
        worker.tokens.verify(first, AUD)
    chain = list(store.keys.find({"purpose": "access_token"}, {"successor_of": 1}))
    assert {d["_id"]: d["successor_of"] for d in chain}[kid(second)] == kid(first)


def test_another_worker_verifies_a_key_it_has_not_seen_yet(
    store: AuthStore, clock: FakeClock
) -> None:
    a, b = Worker(store, clock), Worker(store, clock)
    assert b.tokens.verify(a.mint(), AUD)
    clock.advance(150)
    rotated = a.mint()  # a new key; b's cache (fresh, 60 s bound) has never seen it
    assert b.tokens.verify(rotated, AUD).jti


def test_concurrent_first_use_creates_one_key(store: AuthStore, clock: FakeClock) -> None:
    workers = [Worker(store, clock) for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    kids: list[str] = []

    def sign(worker: Worker) -> None:
        barrier.wait()
        kids.append(worker.keys.signing_key(ACCESS_TOKEN).kid)

    threads = [threading.Thread(target=sign, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(kids)) == 1
    assert store.keys.count_documents({"purpose": "access_token"}) == 1


def test_keys_have_the_specified_algorithms(store: AuthStore, clock: FakeClock) -> None:
    ring = Worker(store, clock).keys
    access, id_key = ring.signing_key(ACCESS_TOKEN), ring.signing_key(ID_TOKEN)
    assert (access.alg, access.public_jwk["kty"], access.public_jwk["crv"]) == (
        "ES256",
        "EC",
        "P-256",
    )
    assert (id_key.alg, id_key.public_jwk["kty"]) == ("RS256", "RSA")
    doc = store.keys.find_one({"_id": access.kid})
    assert doc is not None and "jwk" not in doc  # the private key is stored sealed only
    assert "d" in private_jwk(doc, store.sealer)
    assert doc["expires_at"] > doc["active_until"] > doc["created_at"]


def test_private_keys_are_sealed_and_open_only_with_the_key(
    store: AuthStore, clock: FakeClock
) -> None:
    key = Worker(store, clock).keys.signing_key(ACCESS_TOKEN)
    doc = store.keys.find_one({"_id": key.kid})
    assert doc is not None
    private = key.key.as_dict(private=True)["d"]
    assert private not in str(doc)  # neither in clear nor as any field of the document
    other = Sealer(secrets.token_bytes(32))
    with pytest.raises(SealError, match="another secret key"):
        private_jwk(doc, other)
    # A sealed value moved onto another key's record does not open there.
    second = Worker(store, clock).keys.signing_key(ID_TOKEN)
    moved = {**doc, "_id": second.kid}
    with pytest.raises(SealError, match="altered or moved"):
        private_jwk(moved, store.sealer)


def test_keys_stored_in_clear_are_sealed_at_start_up(store: AuthStore, clock: FakeClock) -> None:
    ring = Worker(store, clock).keys
    key = ring.signing_key(ACCESS_TOKEN)
    jwk = key.key.as_dict(private=True)
    # As an earlier version stored it.
    store.keys.update_one({"_id": key.kid}, {"$set": {"jwk": jwk}, "$unset": {"jwk_sealed": ""}})
    fresh = Worker(store, clock)
    assert fresh.keys.signing_key(ACCESS_TOKEN).kid == key.kid  # readable before sealing
    assert ring.seal_stored() == 1
    assert ring.seal_stored() == 0  # idempotent
    doc = store.keys.find_one({"_id": key.kid})
    assert doc is not None and "jwk" not in doc
    assert private_jwk(doc, store.sealer) == jwk
    token = Worker(store, clock).mint()
    assert kid(token) == key.kid


def test_jwks_endpoint_publishes_public_keys_only(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    r = http.get("/auth/jwks", headers={"Origin": "https://app.example"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "max-age" in r.headers["cache-control"]
    keys = r.json()["keys"]
    assert {k["alg"] for k in keys} >= {"ES256", "RS256"}
    for key in keys:
        assert not PRIVATE & key.keys(), key
        assert key["use"] == "sig" and key["kid"]


def test_cached_verification_still_checks_time_and_key(store: AuthStore, clock: FakeClock) -> None:
    worker = Worker(store, clock)
    token = worker.mint()
    assert worker.tokens.verify(token, AUD)  # signature checked once, then remembered
    clock.advance(301)
    with pytest.raises(InvalidToken, match="expired"):
        worker.tokens.verify(token, AUD)

    fresh = worker.mint()
    assert worker.tokens.verify(fresh, AUD)
    store.keys.delete_many({})  # a key withdrawn (e.g. compromised) stops its cached tokens too
    worker.keys.refresh()
    with pytest.raises(InvalidToken, match="unknown kid"):
        worker.tokens.verify(fresh, AUD)


def test_verified_token_cache_is_bounded(store: AuthStore, clock: FakeClock) -> None:
    worker = Worker(store, clock)
    worker.tokens.verified_cache_size = 3
    tokens = [worker.mint() for _ in range(5)]
    for token in tokens:
        worker.tokens.verify(token, AUD)
    assert len(worker.tokens._verified) == 3
    assert set(worker.tokens._verified) == set(tokens[2:])  # the oldest went first
