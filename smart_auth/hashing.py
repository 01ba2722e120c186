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
    """

    def __init__(self, ttl: float = 60.0, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._key = secrets.token_bytes(32)
        self._seen: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def _mac(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode(), hashlib.sha256).digest()

    def recalls(self, secret_hash: str, secret: str) -> bool:
        with self._lock:
            seen = self._seen.get(secret_hash)
        if seen is None or seen[1] < time.monotonic():
            return False
        return hmac.compare_digest(seen[0], self._mac(secret))

    def remember(self, secret_hash: str, secret: str) -> None:
        with self._lock:
            if len(self._seen) >= self.size:
                self._seen.pop(next(iter(self._seen)))
            self._seen[secret_hash] = (self._mac(secret), time.monotonic() + self.ttl)
