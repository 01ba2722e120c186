"""The FHIR API's front door: CORS, then a valid bearer token on everything but discovery.

`AccessMiddleware` verifies the token (RFC 6750), builds the request's `Access` and puts it on the
ASGI scope, so every handler - and every batch entry, which re-enters the app - finds it there.
Failures are OperationOutcomes: 401 with `WWW-Authenticate: Bearer ...` for a missing or bad
token, 400 for a token in the URL (RFC 6750 section 2.3 is a MAY that RFC 9700 advises against:
URLs end up in logs and Referer headers).

`FhirCors` answers browsers on `/fhir` only (never on the authorize page): any origin, no
credentials (the token travels in `Authorization`, which preflights must list by name because
`*` does not cover it: Fetch standard, CORS-safelisted request-header).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl

from pymongo.errors import PyMongoError
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.access import Access, Delegations, context_for
from fhir_server.audit import AuditTrail, outcome
from fhir_server.errors import FHIR_JSON, FhirError, unavailable
from fhir_server.logs import request_id
from fhir_server.search.engine import Executor
from fhir_server.storage.database import is_unavailable
from smart_auth.tokens import InvalidToken

log = logging.getLogger("phr")

PREFIX = "/fhir"
PUBLIC = frozenset({"/fhir/metadata", "/fhir/.well-known/smart-configuration"})
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ALLOW_HEADERS = (
    "Authorization, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, "
    "If-Modified-Since, Prefer, X-Request-ID"
)
_EXPOSE_HEADERS = "ETag, Location, Content-Location, Last-Modified, X-Request-ID, WWW-Authenticate"
_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def _what(scope: Scope) -> dict[str, Any]:
    client = scope.get("client")
    query = scope.get("query_string", b"").decode("latin-1")
    if "access_token" in query:  # never keep a token, even one sent where it should not be
        query = "&".join(p for p in query.split("&") if not p.startswith("access_token="))
    return {
        "method": scope["method"],
        "path": scope["path"],
        "query": query or None,
        "ip": client[0] if client else None,
        "request_id": request_id.get(),
    }


def _protected(path: str) -> bool:
    return (path == PREFIX or path.startswith(PREFIX + "/")) and path not in PUBLIC


def _challenge(status: int, error: str | None, description: str) -> FhirError:
    value = 'Bearer realm="fhir"'
    if error:
        value += f', error="{error}", error_description="{description}"'
    code = "login" if status == 401 else "invalid"
    return FhirError(description, status, code, headers={"WWW-Authenticate": value})


def bearer_token(scope: Scope) -> str:
    """The token from the one `Authorization: Bearer` header; FhirError otherwise."""
    query = scope.get("query_string", b"").decode("latin-1")
    if query and any(k == "access_token" for k, _ in parse_qsl(query, keep_blank_values=True)):
        raise _challenge(400, "invalid_request", "Send the token in the Authorization header")
    # ASGI header names are lower-case bytes (starlette's Headers relies on it too)
    values: list[bytes] = [v for k, v in scope["headers"] if k == b"authorization"]
    if not values:
        raise _challenge(401, None, "This endpoint needs a bearer access token")
    if len(values) > 1:
        raise _challenge(400, "invalid_request", "Send exactly one Authorization header")
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _challenge(401, "invalid_request", "Use the Bearer authorization scheme")
    if not _B64TOKEN.fullmatch(token):
        raise _challenge(401, "invalid_token", "The access token is malformed")
    return token


class AccessMiddleware:
    """Sets `scope["state"]["access"]` for protected FHIR paths, or answers 401/400/503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.delegations = Delegations()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _protected(scope["path"]) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        trail: AuditTrail = scope["app"].state.audit
        try:
            if not trail.accepting:
                raise unavailable("The audit trail is behind; try again shortly")
            access = await self._access(scope)
        except FhirError as error:
            response = Response(error.outcome(), error.status, error.headers, media_type=FHIR_JSON)
            await response(scope, receive, send)
            if error.status in (400, 401):
                trail.record(**_what(scope), status=error.status, outcome="denied", client=None)
            return
        scope.setdefault("state", {})["access"] = access
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            ctx, token = access.ctx, access.token
            trail.record(
                **_what(scope),
                status=status,
                outcome=outcome(status),
                client=ctx.client_id,
                user=ctx.fhir_user,
                patient=ctx.patient,
                jti=token.jti if token else None,
                pat=tuple(sorted(access.patients)),
            )

    async def _access(self, scope: Scope) -> Access:
        state = scope["app"].state
        svc, auth = state.services, state.auth
        token = bearer_token(scope)
        try:
            claims = await auth.verify_access_token(token)
            executor = Executor(svc.repository.db, svc.base, svc.settings.search_max_candidates)
            ctx = await context_for(
                claims, executor, self.delegations, svc.settings.self_consent_age
            )
        except InvalidToken as exc:
            raise _challenge(401, "invalid_token", exc.reason) from None
        except PyMongoError as exc:
            if not is_unavailable(exc):
                raise
            log.warning("database unavailable while checking a token: %s", type(exc).__name__)
            raise unavailable() from None
        return Access(ctx, svc.base, claims)


class FhirCors:
    """CORS for the FHIR API (SMART App Launch: browsers call it with a bearer token)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        if not any(name == b"origin" for name, _ in scope["headers"]):  # not a browser
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            preflight = {
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": _METHODS,
                "Access-Control-Allow-Headers": _ALLOW_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            }
            await Response(status_code=204, headers=preflight)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = "*"
                out["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_cors)
