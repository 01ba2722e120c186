"""The access-token denylist: revoked JWT ids, shared through MongoDB, cached per process.

JWT access tokens are self-contained, so revocation (RFC 7009) works by jti: `revoke` records the
jti in `revoked` until the token would have expired anyway (TTL), and verification consults an
in-process copy of the whole live set, reloaded when older than `staleness` (<= 1 s by
`AuthSettings`). The live set only holds tokens revoked within one access-token lifetime, so a
reload is one small indexed query per process per interval, whatever the request rate, and a check
is a set lookup. ARCHITECTURE.md item 8 and security catalogue TU-03: effective within a second.

RFC 7009: https://www.rfc-editor.org/rfc/rfc7009
"""

from __future__ import annotations

import threading
import time

from smart_auth.store import AuthStore, utc


class Denylist:
    """Revoked access-token jtis (see the module docstring)."""

    def __init__(self, store: AuthStore, staleness: float) -> None:
        self.store = store
        self.staleness = staleness
        self._jtis: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")  # time.monotonic() when the last reload started
        self._lock = threading.Lock()

    def revoke(self, jti: str, exp: float, client_id: str) -> None:
        """Deny `jti` until `exp`; idempotent (a second revocation keeps the first record)."""
        self.store.revoked.update_one(
            {"_id": jti},
            {"$setOnInsert": {"exp": utc(exp), "client_id": client_id, "at": self.store.now()}},
            upsert=True,
        )
        self._jtis = self._jtis | {jti}  # this worker knows at once; others within `staleness`

    def is_revoked(self, jti: str) -> bool:
        """`contains`, reloading the live set first when it is stale (blocking): what
        introspection answers is what the FHIR API enforces, within the same bound."""
        if self.needs_refresh():
            self.refresh()
        return self.contains(jti)

    def needs_refresh(self) -> bool:
        return time.monotonic() - self._loaded_at >= self.staleness

    def refresh(self) -> None:
        """Reload the live set (blocking). Concurrent callers wait for one reload, not N."""
        with self._lock:
            if not self.needs_refresh():
                return
            started = time.monotonic()
            cursor = self.store.revoked.find({"exp": {"$gt": self.store.now()}}, {"_id": 1})
            self._jtis = frozenset(doc["_id"] for doc in cursor)
            self._loaded_at = started

    def contains(self, jti: str) -> bool:
        """Cache-only check (no I/O); call `refresh` first when `needs_refresh()`."""
        return jti in self._jtis
