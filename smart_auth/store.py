"""The auth collections, and the one sync/async seam of the authorization server.

Authlib's server hooks (`query_client`, `save_token`, `validate_jti`, ...) are synchronous, so
everything in `smart_auth` that touches MongoDB does so through the synchronous
`pymongo.MongoClient` held here, and async code reaches it only through `run_sync`, which runs
the blocking call in Starlette's threadpool (ARCHITECTURE.md, item 2). Nothing else in the
package knows which side of the seam it is on: sync modules call the store directly, async
endpoints wrap the whole synchronous operation in `run_sync`.

Collections (lower case; FHIR type collections are capitalised, so names never clash):

- `clients`   `_id` = client_id; the registration (`clients.py`).
- `keys`      `_id` = kid; private JWK (sealed: sealing.py), `purpose`, `successor_of` (unique
              per purpose: one successor per key, so concurrent workers cannot rotate twice),
              `active_until`, `expires_at` (TTL).
- `accounts`  `_id` = username; argon2 password hash, `sub`, `fhir_user`, TOTP secret (sealed).
- `login_failures`  `_id` = "account:<name>" or "ip:<address>"; failed-login counters (TTL).
- `sessions`  `_id` = SHA-256 of the session cookie; the signed-in user, CSRF token, idle and
              absolute expiry (`expires_at`, TTL).
- `authorization_requests`  `_id` = random id; a validated authorization request waiting for
              login and approval (TTL).
- `launches`  `_id` = SHA-256 of an EHR launch value; patient and client (TTL).
- `codes`     `_id` = SHA-256 of an authorization code; what it grants, `used`, `replayed` (TTL).
- `tokens`    one document per token issuance of a grant: `_id` = SHA-256 of the refresh token
              (or of an unreturned random value when no refresh token was issued), `family` =
              grant id, the access token's `access_jti`/`access_exp` (so revoking the family
              reaches its live access tokens), `used` (rotation), `expires_at` (TTL).
- `jti`       client-assertion replay records, `_id` = "client_id:jti", `expires_at` (TTL).
- `revoked`   revoked access-token jtis, `_id` = jti, `exp` (TTL: forgotten once the token dies).

Expiry is also checked in every query, so correctness never waits for the TTL monitor.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, ExecutionTimeout
from starlette.concurrency import run_in_threadpool

from smart_auth.sealing import Sealer, configured_key
from smart_auth.settings import AuthSettings

P = ParamSpec("P")
T = TypeVar("T")
Document = dict[str, Any]
Clock = Callable[[], float]

CLIENTS, KEYS, TOKENS, JTI, REVOKED = "clients", "keys", "tokens", "jti", "revoked"
ACCOUNTS, LOGIN_FAILURES, SESSIONS = "accounts", "login_failures", "sessions"
AUTHORIZATION_REQUESTS, LAUNCHES, CODES = "authorization_requests", "launches", "codes"
# Collections whose documents die at `expires_at`.
_EXPIRING = (KEYS, TOKENS, JTI, LOGIN_FAILURES, SESSIONS, AUTHORIZATION_REQUESTS, LAUNCHES, CODES)


async def run_sync(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking auth work (Authlib, the sync MongoClient) off the event loop."""
    return await run_in_threadpool(func, *args, **kwargs)


def utc(timestamp: float) -> datetime:
    """An aware datetime for a POSIX timestamp (BSON dates, TTL indexes)."""
    return datetime.fromtimestamp(timestamp, UTC)


def is_unavailable(exc: BaseException) -> bool:
    """True when the database cannot be reached right now (answer 503, not 500)."""
    return isinstance(exc, (ConnectionFailure, ExecutionTimeout))


class AuthStore:
    """The auth collections on a synchronous client (see the module docstring)."""

    def __init__(
        self, client: MongoClient[Document], db_name: str, sealer: Sealer, clock: Clock = time.time
    ):
        self.client = client
        self.db = client[db_name]
        self.sealer = sealer  # for the secrets the server must read back (sealing.py)
        self.clock = clock

    @classmethod
    def connect(cls, settings: AuthSettings, clock: Clock = time.time) -> AuthStore:
        """A client from the same URI as the FHIR API's; it fails fast when the database is away."""
        uri = settings.database_uri()
        if not uri:
            raise RuntimeError("PHR_MONGODB_URI must be set (the embedded launcher sets it)")
        client: MongoClient[Document] = MongoClient(
            uri,
            serverSelectionTimeoutMS=settings.db_timeout_ms,
            connectTimeoutMS=settings.db_timeout_ms,
            tz_aware=True,
            appname="phr-auth",
        )
        return cls(client, settings.db_name, Sealer(configured_key(settings)), clock)

    def seal_clear(
        self,
        collection: Collection[Document],
        clear: str,
        sealed: str,
        context: Callable[[Document], str],
        encode: Callable[[Any], bytes],
    ) -> int:
        """Seal the secrets an earlier version stored in clear in field `clear` into field
        `sealed`; how many documents (blocking, idempotent)."""
        count = 0
        for doc in collection.find({clear: {"$exists": True, "$ne": None}}):
            value = self.sealer.seal(encode(doc[clear]), context(doc))
            done = collection.update_one(
                {"_id": doc["_id"], clear: {"$exists": True}},
                {"$set": {sealed: value}, "$unset": {clear: ""}},
            )
            count += done.modified_count
        return count

    @property
    def clients(self) -> Collection[Document]:
        return self.db[CLIENTS]

    @property
    def keys(self) -> Collection[Document]:
        return self.db[KEYS]

    @property
    def tokens(self) -> Collection[Document]:
        return self.db[TOKENS]

    @property
    def jti(self) -> Collection[Document]:
        return self.db[JTI]

    @property
    def revoked(self) -> Collection[Document]:
        return self.db[REVOKED]

    @property
    def accounts(self) -> Collection[Document]:
        return self.db[ACCOUNTS]

    @property
    def login_failures(self) -> Collection[Document]:
        return self.db[LOGIN_FAILURES]

    @property
    def sessions(self) -> Collection[Document]:
        return self.db[SESSIONS]

    @property
    def authorization_requests(self) -> Collection[Document]:
        return self.db[AUTHORIZATION_REQUESTS]

    @property
    def launches(self) -> Collection[Document]:
        return self.db[LAUNCHES]

    @property
    def codes(self) -> Collection[Document]:
        return self.db[CODES]

    def now(self) -> datetime:
        return utc(self.clock())

    def ensure_indexes(self) -> None:
        """Create the indexes; idempotent, so every worker runs it at start-up."""
        self.keys.create_index(
            [("purpose", ASCENDING), ("successor_of", ASCENDING)], unique=True, name="one_successor"
        )
        for name in _EXPIRING:
            self.db[name].create_index("expires_at", expireAfterSeconds=0, name="ttl")
        self.tokens.create_index([("client_id", ASCENDING)], name="client")
        self.tokens.create_index([("family", ASCENDING)], name="family", sparse=True)
        self.accounts.create_index([("sub", ASCENDING)], unique=True, name="sub")
        # One code per PKCE challenge: a reused challenge is refused (RFC 9700 section 2.1.1).
        self.codes.create_index([("code_challenge", ASCENDING)], unique=True, name="challenge")
        self.revoked.create_index("exp", expireAfterSeconds=0, name="ttl")

    def close(self) -> None:
        self.client.close()


def digest(secret: str) -> str:
    """The stored form of a random bearer secret (code, refresh token, session id): SHA-256 is
    enough because the secrets carry 256 bits of entropy; a database leak yields nothing usable."""
    return hashlib.sha256(secret.encode()).hexdigest()
