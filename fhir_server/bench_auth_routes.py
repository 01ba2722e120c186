"""Bare baselines of the authorization server's endpoints (`PHR_BENCH_ROUTES=1`; see
docs/benchmarks-auth.md).

Each does the crypto and the minimal database work its endpoint cannot avoid, with none of the
OAuth machinery: no Authlib, no client lookup or authentication, no grant or scope checks, no
grant bookkeeping. Same process, same synchronous PyMongo client (`AuthStore`) reached through the
same threadpool hop (`run_sync`), same collections, indexes and document shapes, same signing keys
(`KeyRing`, cached) and the same joserfc calls as `smart_auth`:

- `POST /bare/_auth/code` (form `code`, `code_verifier`): SHA-256 of the code, a `find_one`
  reading the `codes` record and one conditional `update_one` spending it (SecantusDB scans the
  whole collection for a `find_one_and_update`), SHA-256 of the verifier
  against the stored S256 challenge, an ES256 access token, a random refresh token and its
  SHA-256, one `insert_one` of the `tokens` record, an RS256 id_token (the candidate issues one:
  `openid` is granted).
- `POST /bare/_auth/refresh` (form `refresh_token`): SHA-256 of the token, a `find_one` and a
  conditional `update_one` spending the `tokens` record, an ES256 access token, a new refresh token
  and its SHA-256, one `insert_one` of the new `tokens` record.

- `POST /bare/_auth/client-credentials` (form `scope`, `client_assertion`): performance.md's W6
  "crypto ceiling": the ES384 signature of the client assertion, verified with the key of its
  `iss` from the client registry's in-process cache, and an ES256 access token; no claim checks,
  no `jti` record, no scope checks.

(W7, introspection, is measured against the bare FHIR read, as performance.md defines it.)

Never enable in production: they hand out tokens to anyone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl

import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smart_auth.clients import CLIENT_ASSERTION_ALGS
from smart_auth.keys import ACCESS_TOKEN, ID_TOKEN
from smart_auth.services import AuthServices
from smart_auth.store import digest, run_sync, utc

_JSON = "application/json"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CONTEXT = ("client_id", "sub", "fhir_user", "patient", "need_patient_banner", "session")


def _auth(request: Request) -> AuthServices:
    auth: AuthServices = request.app.state.auth
    return auth


async def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))


def _refused(status: int = 400) -> Response:
    return Response(b'{"error":"invalid_grant"}', status, _NO_STORE, media_type=_JSON)


def _access_token(auth: AuthServices, doc: dict[str, Any], scope: str) -> tuple[str, str, int]:
    """(token, jti, exp): the claims and signature `TokenService.mint` produces."""
    key = auth.keys.signing_key(ACCESS_TOKEN)
    now = int(auth.store.clock())
    exp = now + auth.settings.access_token_lifetime
    jti = secrets.token_urlsafe(16)
    claims: dict[str, Any] = {
        "iss": auth.settings.issuer_url,
        "aud": auth.fhir_base,
        "sub": doc["sub"],
        "client_id": doc["client_id"],
        "scope": scope,
        "jti": jti,
        "iat": now,
        "exp": exp,
    }
    if doc.get("patient") is not None:
        claims["patient"] = doc["patient"]
    if doc.get("fhir_user") is not None:
        claims["fhirUser"] = doc["fhir_user"]
    header = {"alg": ACCESS_TOKEN.alg, "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key.key, algorithms=[ACCESS_TOKEN.alg]), jti, exp


def _record(
    auth: AuthServices, doc: dict[str, Any], family: str, scope: str, jti: str, exp: int
) -> str:
    """A new refresh token, recorded as `GrantStore.issue` records one (same document shape)."""
    store = auth.store
    refresh = secrets.token_urlsafe(32)
    until = store.clock() + auth.settings.refresh_token_lifetime
    store.tokens.insert_one(
        {
            "_id": digest(refresh),
            **{name: doc.get(name) for name in _CONTEXT},
            "family": family,
            "scope": scope,
            "access_jti": jti,
            "access_exp": utc(exp),
            "used": False,
            "revoked": False,
            "issued_at": store.now(),
            "expires_at": utc(max(float(exp), until)),
        }
    )
    return refresh


def _body(
    auth: AuthServices, token: str, scope: str, refresh: str, doc: dict[str, Any]
) -> dict[str, Any]:
    """The fields of the candidate's token response (`SmartAuthorizationServer.issue_tokens`)."""
    body: dict[str, Any] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": auth.settings.access_token_lifetime,
        "scope": scope,
        "refresh_token": refresh,
    }
    if doc.get("patient") is not None:
        body["patient"] = doc["patient"]
    body["need_patient_banner"] = doc.get("need_patient_banner", True)
    body["smart_style_url"] = auth.settings.public_base + "/auth/smart-style.json"
    return body


def _exchange(auth: AuthServices, form: dict[str, str]) -> Response:
    store = auth.store
    code_id = digest(form.get("code", ""))
    code = store.codes.find_one({"_id": code_id})  # by `_id` alone, as smart_auth reads it
    if code is None or code["used"]:
        return _refused()
    spent = store.codes.update_one({"_id": code_id, "used": False}, {"$set": {"used": True}})
    if spent.modified_count != 1:
        return _refused()
    verifier = form.get("code_verifier", "").encode("ascii")
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
    if not hmac.compare_digest(computed.decode("ascii"), code["code_challenge"]):
        return _refused()
    scope = code["scope"]
    token, jti, exp = _access_token(auth, code, scope)
    refresh = _record(auth, code, code["grant"], scope, jti, exp)
    body = _body(auth, token, scope, refresh, code)
    key = auth.keys.signing_key(ID_TOKEN)
    now = int(store.clock())
    claims: dict[str, Any] = {
        "iss": auth.settings.issuer_url,
        "sub": code["sub"],
        "aud": code["client_id"],
        "iat": now,
        "exp": now + auth.settings.id_token_lifetime,
        "auth_time": code["auth_time"],
        "fhirUser": code["fhir_user"],
    }
    if code.get("nonce") is not None:
        claims["nonce"] = code["nonce"]
    header = {"alg": ID_TOKEN.alg, "typ": "JWT", "kid": key.kid}
    body["id_token"] = jwt.encode(header, claims, key.key, [ID_TOKEN.alg])
    return Response(orjson.dumps(body), 200, _NO_STORE, media_type=_JSON)


def _refresh(auth: AuthServices, form: dict[str, str]) -> Response:
    store = auth.store
    token_id = digest(form.get("refresh_token", ""))
    old = store.tokens.find_one({"_id": token_id, "expires_at": {"$gt": store.now()}})
    if old is not None and old["used"] is False and old["revoked"] is False:
        spent = store.tokens.update_one(
            {"_id": token_id, "used": False, "revoked": False}, {"$set": {"used": True}}
        )
        old = old if spent.modified_count == 1 else None
    else:
        old = None
    if old is None:
        return _refused()
    scope = old["scope"]
    token, jti, exp = _access_token(auth, old, scope)
    refresh = _record(auth, old, old["family"], scope, jti, exp)
    body = _body(auth, token, scope, refresh, old)
    return Response(orjson.dumps(body), 200, _NO_STORE, media_type=_JSON)


def _client_credentials(auth: AuthServices, form: dict[str, str]) -> Response:
    assertion = form.get("client_assertion", "")
    try:
        iss = json.loads(jws.extract_compact(assertion.encode()).payload)["iss"]
        client = auth.clients.get(iss)
        if client is None:
            return _refused(401)
        jwt.decode(assertion, client.public_keys(), algorithms=list(CLIENT_ASSERTION_ALGS))
    except (JoseError, ValueError, TypeError, KeyError):
        return _refused(401)
    doc = {"sub": iss, "client_id": iss}
    scope = form.get("scope", "")
    token, _jti, _exp = _access_token(auth, doc, scope)
    body = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": auth.settings.access_token_lifetime,
        "scope": scope,
    }
    return Response(orjson.dumps(body), 200, _NO_STORE, media_type=_JSON)


async def bare_code_exchange(request: Request) -> Response:
    """POST /bare/_auth/code: the authorization-code exchange's crypto and its two writes."""
    return await run_sync(_exchange, _auth(request), await _form(request))


async def bare_refresh(request: Request) -> Response:
    """POST /bare/_auth/refresh: the refresh grant's crypto and its two writes."""
    return await run_sync(_refresh, _auth(request), await _form(request))


async def bare_client_credentials(request: Request) -> Response:
    """POST /bare/_auth/client-credentials: the backend-services grant's crypto alone."""
    return await run_sync(_client_credentials, _auth(request), await _form(request))


def bare_auth_routes() -> list[Route]:
    return [
        Route("/bare/_auth/client-credentials", bare_client_credentials, methods=["POST"]),
        Route("/bare/_auth/code", bare_code_exchange, methods=["POST"]),
        Route("/bare/_auth/refresh", bare_refresh, methods=["POST"]),
    ]
