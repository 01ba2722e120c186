"""OpenID Connect id_tokens: RS256 (SMART and OIDC Core's mandatory algorithm), `aud` = client_id.

Signed with the `ID_TOKEN` key chain of `keys.py` and published in the same JWKS as the access-token
keys, with `kid` in the header (SMART checklist 4.9-4.16).

OIDC Core section 2: https://openid.net/specs/openid-connect-core-1_0.html#IDToken
SMART fhirUser: https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#scopes-for-requesting-identity-data
"""

from __future__ import annotations

from typing import Any

from joserfc import jwt

from smart_auth.keys import ID_TOKEN, KeyRing
from smart_auth.store import Clock

ALG = "RS256"


class IdTokenService:
    def __init__(self, keys: KeyRing, *, issuer: str, lifetime: int, clock: Clock) -> None:
        self.keys = keys
        self.issuer = issuer
        self.lifetime = lifetime
        self.clock = clock

    def mint(
        self,
        *,
        client_id: str,
        sub: str,
        auth_time: int,
        nonce: str | None = None,
        fhir_user: str | None = None,
    ) -> str:
        """A signed id_token (blocking on first use: key creation)."""
        key = self.keys.signing_key(ID_TOKEN)
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": client_id,
            "iat": now,
            "exp": now + self.lifetime,
            "auth_time": auth_time,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if fhir_user is not None:
            claims["fhirUser"] = fhir_user
        return jwt.encode({"alg": ALG, "typ": "JWT", "kid": key.kid}, claims, key.key, [ALG])
