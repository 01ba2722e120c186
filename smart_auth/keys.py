"""Signing keys: stored in MongoDB, created on first use, rotated, published as a JWKS.

Each purpose (access tokens ES256, id_tokens RS256; ARCHITECTURE.md item 9) has a chain of keys:
a key signs until `active_until`, then the next caller creates its successor, and the old key keeps
verifying until `expires_at` (its last token's expiry plus the cache bound and leeway). A unique
index on (`purpose`, `successor_of`) makes rotation race-free across workers: the loser of the
insert race reloads and uses the winner's key.

Workers cache the key set for at most `cache_seconds`; a token carrying an unknown `kid` forces a
reload (at most once per `miss_refresh_interval`), so a key another worker just created verifies at
once without letting garbage `kid`s hammer the database.

RFC 7517 (JWK): https://www.rfc-editor.org/rfc/rfc7517
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import ECKey, Key, RSAKey, import_key
from pymongo.errors import DuplicateKeyError

from smart_auth.sealing import Sealer
from smart_auth.store import AuthStore, Document, utc


@dataclass(frozen=True)
class KeyPurpose:
    """What a key chain signs, with which algorithm and key type."""

    name: str
    alg: str

    def generate(self) -> Key:
        if self.alg == "ES256":
            return ECKey.generate_key("P-256", auto_kid=True)
        if self.alg == "RS256":
            return RSAKey.generate_key(2048, auto_kid=True)
        raise ValueError(f"no key generator for {self.alg}")


ACCESS_TOKEN = KeyPurpose("access_token", "ES256")
ID_TOKEN = KeyPurpose("id_token", "RS256")


def _jwk_context(kid: str) -> str:
    return f"keys/{kid}/jwk"


def private_jwk(doc: Document, sealer: Sealer) -> dict[str, Any]:
    """A stored key's private JWK: sealed, or in clear as written before sealing (start-up seals
    those, `KeyRing.seal_stored`)."""
    if "jwk_sealed" in doc:
        jwk: dict[str, Any] = json.loads(sealer.open(doc["jwk_sealed"], _jwk_context(doc["_id"])))
        return jwk
    return dict(doc["jwk"])


@dataclass(frozen=True)
class SigningKey:
    """One stored key, parsed once per process."""

    kid: str
    purpose: str
    alg: str
    key: Key  # private
    created_at: float
    active_until: float
    expires_at: float
    public_jwk: dict[str, Any] = field(repr=False)

    @classmethod
    def from_document(cls, doc: Document, sealer: Sealer) -> SigningKey:
        key = import_key(private_jwk(doc, sealer))
        public = {**key.as_dict(private=False), "kid": doc["_id"], "alg": doc["alg"], "use": "sig"}
        return cls(
            kid=doc["_id"],
            purpose=doc["purpose"],
            alg=doc["alg"],
            key=key,
            created_at=doc["created_at"].timestamp(),
            active_until=doc["active_until"].timestamp(),
            expires_at=doc["expires_at"].timestamp(),
            public_jwk=public,
        )


@dataclass(frozen=True)
class _Snapshot:
    loaded_at: float  # time.monotonic() when the query started
    by_kid: dict[str, SigningKey]


class KeyRing:
    """Current signing keys and every key still verifying, cached with a staleness bound."""

    def __init__(
        self,
        store: AuthStore,
        *,
        rotation_period: float,
        verify_grace: float,
        cache_seconds: float = 60.0,
        miss_refresh_interval: float = 1.0,
        purposes: Iterable[KeyPurpose] = (ACCESS_TOKEN, ID_TOKEN),
    ) -> None:
        self.store = store
        self.rotation_period = rotation_period
        self.verify_grace = verify_grace
        self.cache_seconds = cache_seconds
        self.miss_refresh_interval = miss_refresh_interval
        self.purposes = tuple(purposes)
        self._snapshot = _Snapshot(float("-inf"), {})
        self._lock = threading.Lock()

    # -- cache -----------------------------------------------------------------------------------

    def _stale(self) -> bool:
        return time.monotonic() - self._snapshot.loaded_at >= self.cache_seconds

    def refresh(self) -> None:
        """Reload every unexpired key (blocking; parsed keys are reused, RSA parsing is slow)."""
        with self._lock:
            started = time.monotonic()
            old = self._snapshot.by_kid
            by_kid: dict[str, SigningKey] = {}
            for doc in self.store.keys.find({"expires_at": {"$gt": self.store.now()}}):
                by_kid[doc["_id"]] = old.get(doc["_id"]) or SigningKey.from_document(
                    doc, self.store.sealer
                )
            self._snapshot = _Snapshot(started, by_kid)

    def needs_refresh(self, kid: str | None) -> bool:
        """True when `lookup(kid)` would be answered from a cache that must be reloaded first."""
        if self._stale():
            return True
        if kid is not None and kid not in self._snapshot.by_kid:
            return time.monotonic() - self._snapshot.loaded_at >= self.miss_refresh_interval
        return False

    def lookup(self, purpose: KeyPurpose, kid: str) -> SigningKey | None:
        """A key that may verify tokens of `purpose` now, from the cache only (no I/O)."""
        key = self._snapshot.by_kid.get(kid)
        if key is None or key.purpose != purpose.name or key.expires_at <= self.store.clock():
            return None
        return key

    def verification_key(self, purpose: KeyPurpose, kid: str) -> SigningKey | None:
        """`lookup`, reloading first when the cache is stale or the kid is new (blocking)."""
        if self.needs_refresh(kid):
            self.refresh()
        return self.lookup(purpose, kid)

    # -- signing and rotation --------------------------------------------------------------------

    def _current(self, purpose: KeyPurpose, now: float) -> SigningKey | None:
        # No `created_at <= now`: a key another host created a few ms "in the future" (clock
        # skew) is current, not a reason to rotate again.
        candidates = [
            k
            for k in self._snapshot.by_kid.values()
            if k.purpose == purpose.name and now < k.active_until
        ]
        return max(candidates, key=lambda k: k.created_at, default=None)

    def _newest(self, purpose: KeyPurpose) -> SigningKey | None:
        keys = [k for k in self._snapshot.by_kid.values() if k.purpose == purpose.name]
        return max(keys, key=lambda k: k.created_at, default=None)

    def signing_key(self, purpose: KeyPurpose) -> SigningKey:
        """The key to sign with now, creating or rotating it when due (blocking)."""
        now = self.store.clock()
        key = None if self._stale() else self._current(purpose, now)
        if key is None:
            self.refresh()
            key = self._current(purpose, now)
        for _ in range(3):
            if key is not None:
                return key
            key = self._rotate(purpose, now)
        raise RuntimeError(f"could not establish a {purpose.name} signing key")

    def _rotate(self, purpose: KeyPurpose, now: float) -> SigningKey | None:
        predecessor = self._newest(purpose)
        new = purpose.generate()
        kid = str(new.kid)  # generated with auto_kid: the RFC 7638 thumbprint
        active_until = now + self.rotation_period
        doc = {
            "_id": kid,
            "purpose": purpose.name,
            "alg": purpose.alg,
            "jwk_sealed": self.store.sealer.seal(
                json.dumps(new.as_dict(private=True)).encode(), _jwk_context(kid)
            ),
            "successor_of": predecessor.kid if predecessor else None,
            "created_at": utc(now),
            "active_until": utc(active_until),
            "expires_at": utc(active_until + self.verify_grace),
        }
        with contextlib.suppress(DuplicateKeyError):  # another worker rotated first: use its key
            self.store.keys.insert_one(doc)
        self.refresh()
        return self._current(purpose, now)

    def seal_stored(self) -> int:
        """Seal the private JWKs stored in clear by an earlier version; how many (blocking)."""
        return self.store.seal_clear(
            self.store.keys,
            "jwk",
            "jwk_sealed",
            lambda doc: _jwk_context(doc["_id"]),
            lambda jwk: json.dumps(jwk).encode(),
        )

    def open_stored(self) -> None:
        """Open every stored key, caching nothing: SealError if they were sealed under another
        secret key (blocking)."""
        for doc in self.store.keys.find({"jwk_sealed": {"$exists": True}}, {"jwk_sealed": 1}):
            private_jwk(doc, self.store.sealer)

    # -- publication -----------------------------------------------------------------------------

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set: every key still verifying, never a private member (blocking)."""
        for purpose in self.purposes:
            self.signing_key(purpose)
        now = self.store.clock()
        keys = sorted(self._snapshot.by_kid.values(), key=lambda k: (k.purpose, -k.created_at))
        return {"keys": [dict(k.public_jwk) for k in keys if k.expires_at > now]}
