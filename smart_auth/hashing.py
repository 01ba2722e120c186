"""Client secrets (and later passwords) stored only as argon2id hashes.

RFC 9106: https://www.rfc-editor.org/rfc/rfc9106 ; argon2-cffi: https://argon2-cffi.readthedocs.io
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

import argon2
import argon2.profiles
from argon2.exceptions import InvalidHashError, VerificationError

from smart_auth.settings import Argon2Profile

# Verification reads the parameters from the hash itself, so one verifier serves every profile.
_VERIFIER = argon2.PasswordHasher()


def verify_secret(secret_hash: str, secret: str) -> bool:
    """True when `secret` matches `secret_hash` (constant-time inside argon2)."""
    try:
        return _VERIFIER.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


class SecretHasher:
    """Hashes new secrets with the configured argon2 parameters."""

    def __init__(self, profile: Argon2Profile) -> None:
        self._hasher = argon2.PasswordHasher.from_parameters(getattr(argon2.profiles, profile))
        # Checked against when the client is unknown, so that answer takes as long as a wrong
        # secret for a known client (security catalogue TE-01: no client-id oracle).
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def spend_decoy(self, secret: str) -> None:
        verify_secret(self._decoy, secret)


class VerifiedSecrets:
    """Client secrets that passed argon2 in the last `ttl` seconds, remembered only as an HMAC
    under a key that never leaves this process, and keyed by the stored hash.

    A backend calling the token or introspection endpoint many times a second then pays argon2
    once per `ttl`, not per call (RFC 9106 parameters cost tens of milliseconds). A wrong secret
    always pays the full argon2 price, so guessing is no cheaper; a rotated or deleted secret
    has another (or no) stored hash, so it stops matching at once. Bounded: the oldest entries
    go first.

    `check` runs argon2 once for concurrent identical attempts: when the entry has lapsed, the
    sixteen connections of a busy resource server would otherwise each pay argon2 at the same
    moment (seconds of CPU, every request stalled). Distinct secrets never wait for each other.
    """

    def __init__(self, ttl: float = 60.0, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._key = secrets.token_bytes(32)
        self._seen: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, bytes], tuple[threading.Lock, list[int]]] = {}

    def _mac(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode(), hashlib.sha256).digest()

    def recalls(self, secret_hash: str, secret: str) -> bool:
        return self._recalls(secret_hash, self._mac(secret))

    def remember(self, secret_hash: str, secret: str) -> None:
        self._remember(secret_hash, self._mac(secret))

    def check(self, secret_hash: str, secret: str) -> bool:
        """True when `secret` matches `secret_hash`: remembered, or verified by argon2 (once
        for concurrent identical attempts) and then remembered."""
        mac = self._mac(secret)
        if self._recalls(secret_hash, mac):
            return True
        key = (secret_hash, mac)
        with self._lock:
            lock, waiting = self._flights.setdefault(key, (threading.Lock(), [0]))
            waiting[0] += 1
        try:
            with lock:
                if self._recalls(secret_hash, mac):  # verified by the attempt waited for
                    return True
                if not verify_secret(secret_hash, secret):
                    return False
                self._remember(secret_hash, mac)
                return True
        finally:
            with self._lock:
                waiting[0] -= 1
                if not waiting[0]:
                    del self._flights[key]

    def _recalls(self, secret_hash: str, mac: bytes) -> bool:
        with self._lock:
            seen = self._seen.get(secret_hash)
        if seen is None or seen[1] < time.monotonic():
            return False
        return hmac.compare_digest(seen[0], mac)

    def _remember(self, secret_hash: str, mac: bytes) -> None:
        with self._lock:
            if len(self._seen) >= self.size:
                self._seen.pop(next(iter(self._seen)))
            self._seen[secret_hash] = (mac, time.monotonic() + self.ttl)
