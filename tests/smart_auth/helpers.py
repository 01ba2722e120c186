"""Client keys, client assertions and token requests for the authorization-server tests."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def es384_key() -> ECKey:
    return ECKey.generate_key("P-384", auto_kid=True)


def rs384_key() -> RSAKey:
    return RSAKey.generate_key(2048, auto_kid=True)


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [{**k.as_dict(private=False), "kid": k.kid} for k in keys]}


def assertion(
    key: Key,
    client_id: str,
    aud: str,
    *,
    alg: str | None = None,
    kid: str | None = None,
    exp_in: float = 300,
    omit: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A client assertion as Inferno builds it: iss, sub, aud, exp, jti; no iat (section 0)."""
    alg = alg or ("ES384" if isinstance(key, ECKey) else "RS384")
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": int(time.time() + exp_in),
        "jti": secrets.token_hex(32),
        **claims,
    }
    for name in omit:
        body.pop(name, None)
    header = {"alg": alg, "kid": kid or key.kid, "typ": "JWT"}
    return jwt.encode(header, body, key, algorithms=[alg])


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWS with an empty signature (`alg: none` and friends)."""
    return f"{b64url(header)}.{b64url(claims)}."


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified (for assertions about what was issued)."""
    header, payload, _ = token.split(".")
    return json.loads(_b64decode(header)), json.loads(_b64decode(payload))


def assertion_form(client_assertion: str, scope: str = "system/Patient.rs", **extra: str) -> dict:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        **extra,
    }


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def oauth_error(r: httpx.Response, status: int | tuple[int, ...], error: str) -> dict[str, Any]:
    """`r` is an RFC 6749 error: the status, JSON `{"error": ...}`, no-store, never 422/500."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.headers["cache-control"] == "no-store", r.headers
    body = r.json()
    assert body["error"] == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    assert "\n" not in body.get("error_description", ""), body
    return body
