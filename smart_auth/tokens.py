"""JWT access tokens (RFC 9068): minted here, verified here on every FHIR request.

Verification checks, in order: shape and size, header `alg` (ES256 only: never `none`, HS* or an
id_token's RS256), `typ` (`at+jwt`, so an id_token is not a bearer token), `kid` (a current or
still-verifying access-token key), signature, `iss`, `aud` (the FHIR base; RFC 9700 section 2.3),
time (`exp`, `iat`, with leeway) and the denylist (`revocation.py`). Everything needed comes
from caches with stated staleness bounds, so `verify_cached` does no I/O; `verify` reloads the
caches first when they are stale (blocking; for threads), `AuthServices.verify_access_token` does
the same off the event loop.

The signature (ECDSA P-256, 0.1-0.2 ms: more than a whole FHIR read) is checked once per distinct
token: tokens that passed are remembered by their exact text (bounded, oldest evicted first), and
every call still checks that their key still verifies, the audience, the time and the denylist.

RFC 9068: https://www.rfc-editor.org/rfc/rfc9068
SMART access token: https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#response-5
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from consent.scopes import Scopes, parse_scopes
from smart_auth.keys import ACCESS_TOKEN, KeyRing
from smart_auth.revocation import Denylist
from smart_auth.store import Clock

ALG = "ES256"
TYP = "at+jwt"
_TYPES = frozenset({TYP, "application/at+jwt"})  # RFC 9068 section 4: compare case-insensitively
MAX_TOKEN_CHARS = 8192


class InvalidToken(Exception):
    """The bearer token is not acceptable; `reason` is short, fixed text safe to show the caller
    (RFC 6750 `error="invalid_token"`, `error_description`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AccessToken:
    """The verified claims of an access token."""

    jti: str
    iss: str
    aud: str | list[str]
    sub: str
    client_id: str
    scope: str
    iat: int
    exp: int
    patient: str | None = None
    fhir_user: str | None = None

    @property
    def scopes(self) -> Scopes:
        """The SMART scopes, parsed once per distinct scope string."""
        return _parse_scopes(self.scope)

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.iss,
            "aud": self.aud,
            "sub": self.sub,
            "client_id": self.client_id,
            "scope": self.scope,
            "jti": self.jti,
            "iat": self.iat,
            "exp": self.exp,
        }
        if self.patient is not None:
            claims["patient"] = self.patient
        if self.fhir_user is not None:
            claims["fhirUser"] = self.fhir_user
        return claims


@lru_cache(maxsize=1024)
def _parse_scopes(text: str) -> Scopes:
    return parse_scopes(text)


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, without verifying anything (to choose the key)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise InvalidToken("malformed token")
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    return header


def _checked_header(token: str) -> str:
    """The `kid` of a token whose header could be one of our access tokens."""
    header = unverified_header(token)
    if header.get("alg") != ALG:
        raise InvalidToken("unsupported alg")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _TYPES:
        raise InvalidToken("not an access token (typ)")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("unknown kid")
    return kid


def _int(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidToken(f"missing or invalid claim: {name}")
    return value


def _str(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise InvalidToken(f"missing or invalid claim: {name}")
    return value


def _optional_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None


class TokenService:
    """Mints and verifies access tokens for one issuer."""

    def __init__(
        self,
        keys: KeyRing,
        denylist: Denylist,
        *,
        issuer: str,
        lifetime: int,
        leeway: int,
        clock: Clock,
        verified_cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        self.denylist = denylist
        self.issuer = issuer
        self.lifetime = lifetime
        self.leeway = leeway
        self.clock = clock
        self.verified_cache_size = verified_cache_size
        # token text -> (kid, claims) of tokens whose header, signature and issuer checked out
        self._verified: dict[str, tuple[str, AccessToken]] = {}
        self._verified_lock = threading.Lock()

    def mint(
        self,
        *,
        audience: str,
        client_id: str,
        subject: str,
        scope: str,
        patient: str | None = None,
        fhir_user: str | None = None,
        lifetime: int | None = None,
    ) -> tuple[str, AccessToken]:
        """A signed access token and its claims (blocking on first use: key creation)."""
        key = self.keys.signing_key(ACCESS_TOKEN)
        now = int(self.clock())
        claims = AccessToken(
            jti=secrets.token_urlsafe(16),
            iss=self.issuer,
            aud=audience,
            sub=subject,
            client_id=client_id,
            scope=scope,
            iat=now,
            exp=now + (lifetime or self.lifetime),
            patient=patient,
            fhir_user=fhir_user,
        )
        header = {"alg": ALG, "typ": TYP, "kid": key.kid}
        token = jwt.encode(header, claims.claims(), key.key, algorithms=[ALG])
        return token, claims

    # -- cache freshness -------------------------------------------------------------------------

    def _kid(self, token: str) -> str:
        hit = self._verified.get(token)
        return hit[0] if hit is not None else _checked_header(token)

    def needs_io(self, token: str) -> bool:
        """True when verifying `token` must first reload a cache (keys or denylist)."""
        try:
            kid = self._kid(token)
        except InvalidToken:
            return False  # refused without touching the database
        return self.keys.needs_refresh(kid) or self.denylist.needs_refresh()

    def refresh(self, token: str) -> None:
        """Reload whatever cache `token`'s verification needs (blocking)."""
        if self.keys.needs_refresh(self._kid(token)):
            self.keys.refresh()
        if self.denylist.needs_refresh():
            self.denylist.refresh()

    # -- verification ----------------------------------------------------------------------------

    def verify(self, token: str, audience: str) -> AccessToken:
        """`verify_cached`, reloading stale caches first (blocking)."""
        if self.needs_io(token):
            self.refresh(token)
        return self.verify_cached(token, audience)

    def verify_cached(self, token: str, audience: str) -> AccessToken:
        """Verify `token` for the resource server at `audience` from the caches only."""
        claims = self.decode_cached(token)
        aud = claims.aud
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise InvalidToken("wrong audience")
        now = self.clock()
        if claims.exp + self.leeway <= now:
            raise InvalidToken("token expired")
        if claims.iat - self.leeway > now:
            raise InvalidToken("token issued in the future")
        if self.denylist.contains(claims.jti):
            raise InvalidToken("token revoked")
        return claims

    def decode(self, token: str) -> AccessToken:
        """`decode_cached`, reloading the keys first when needed (blocking)."""
        if self.keys.needs_refresh(self._kid(token)):
            self.keys.refresh()
        return self.decode_cached(token)

    def decode_cached(self, token: str) -> AccessToken:
        """The claims of one of our access tokens (header, key, signature, issuer), whatever its
        time, audience or revocation: introspection and revocation report on those."""
        hit = self._verified.get(token)
        if hit is not None and self.keys.lookup(ACCESS_TOKEN, hit[0]) is not None:
            return hit[1]
        kid = _checked_header(token)
        key = self.keys.lookup(ACCESS_TOKEN, kid)
        if key is None:
            raise InvalidToken("unknown kid")
        try:
            claims = json.loads(jws.deserialize_compact(token, key.key, algorithms=[ALG]).payload)
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("bad signature") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed token")
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        aud = claims.get("aud")
        if not isinstance(aud, str) and not (
            isinstance(aud, list) and all(isinstance(a, str) for a in aud)
        ):
            raise InvalidToken("missing or invalid claim: aud")
        verified = AccessToken(
            jti=_str(claims, "jti"),
            iss=self.issuer,
            aud=aud,
            sub=_str(claims, "sub"),
            client_id=_str(claims, "client_id"),
            scope=_str(claims, "scope"),
            iat=_int(claims, "iat"),
            exp=_int(claims, "exp"),
            patient=_optional_str(claims, "patient"),
            fhir_user=_optional_str(claims, "fhirUser"),
        )
        self._remember(token, kid, verified)
        return verified

    def _remember(self, token: str, kid: str, claims: AccessToken) -> None:
        with self._verified_lock:
            if len(self._verified) >= self.verified_cache_size:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = (kid, claims)
