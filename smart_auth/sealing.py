"""Secrets at rest: AES-256-GCM under the server's secret key.

The private signing JWKs and the accounts' TOTP secrets must be read back to be used (to sign, to
check a code), so they cannot be hashed like passwords and client secrets. They are sealed
instead: a database dump or backup without the key reveals neither. The associated data names the
record and field a value belongs to, so a sealed value copied onto another record does not open.

The key is `PHR_SECRET_KEY` (32 bytes, base64url), else the key file (`PHR_SECRET_KEY_FILE`, by
default `secret.key` beside the embedded database directory), created on first start. Every
process of one deployment must share it: set `PHR_SECRET_KEY` where they do not share a disk.

Sealed form: `v1.<key id>.<nonce>.<ciphertext and tag>` (base64url); the key id (8 hex digits of
the key's SHA-256) makes a value sealed under another key fail with a clear error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smart_auth.settings import AuthSettings

KEY_BYTES = 32
_VERSION = "v1"


class SealError(Exception):
    """A sealed value that cannot be opened with this key (another key, or altered)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_key(text: str) -> bytes:
    """A base64url secret key, or ValueError."""
    try:
        key = _unb64(text.strip())
    except (binascii.Error, ValueError):
        raise ValueError("the secret key must be base64url") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"the secret key must be {KEY_BYTES} bytes, base64url-encoded")
    return key


def new_key() -> str:
    """A fresh secret key, base64url (`python -m smart_auth secret-key`)."""
    return _b64(secrets.token_bytes(KEY_BYTES))


def key_file(path: Path) -> bytes:
    """The key in `path`, created (mode 0600) when missing. A concurrent first start of another
    process cannot leave a half-written file: the key is written aside, then linked into place."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key() + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            aside.unlink()
    return decode_key(path.read_text())


def configured_key(settings: AuthSettings) -> bytes:
    """`PHR_SECRET_KEY`, else the key file's key."""
    if settings.secret_key is not None:
        return decode_key(settings.secret_key.get_secret_value())
    return key_file(settings.secret_key_path)


class Sealer:
    """Seals and opens short secrets under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the secret key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def seal(self, secret: bytes, context: str) -> str:
        """`secret` sealed for the record and field that `context` names."""
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret, context.encode())
        return ".".join((_VERSION, self.key_id, _b64(nonce), _b64(sealed)))

    def open(self, value: str, context: str) -> bytes:
        """The secret `seal(secret, context)` returned `value` for, or SealError."""
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            raise SealError("not a sealed value")
        if parts[1] != self.key_id:
            raise SealError(
                f"sealed under another secret key (key id {parts[1]}, this one is {self.key_id}):"
                " set PHR_SECRET_KEY, or the key file, to the key the secrets were sealed with"
            )
        try:
            return self._aead.decrypt(_unb64(parts[2]), _unb64(parts[3]), context.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError(f"the sealed value of {context} was altered or moved") from None
