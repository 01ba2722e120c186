"""Client secrets (and later passwords) stored only as argon2id hashes.

RFC 9106: https://www.rfc-editor.org/rfc/rfc9106 ; argon2-cffi: https://argon2-cffi.readthedocs.io
"""

from __future__ import annotations

import secrets

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
