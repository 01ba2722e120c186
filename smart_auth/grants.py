"""Token grants: small Authlib subclasses with SMART's rules as named checks.

- `ClientCredentialsGrant`: SMART Backend Services.
- `AuthorizationCodeGrant`: redeems a code from `/auth/authorize` (single use; PKCE S256 checked
  here, the challenge having been required at the authorization endpoint).
- `RefreshTokenGrant`: rotation on every use, reuse detection, narrowing only (`refresh.py`).

Both validate first, then issue, and commit by spending what was presented (`refresh.py`).

Backend services: https://hl7.org/fhir/smart-app-launch/STU2.2/backend-services.html
SMART token response: https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#response-5
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    grants,
)

from consent.scopes import parse_scopes, within
from smart_auth.clients import Client
from smart_auth.codes import AuthorizationCode, CodeReplayed
from smart_auth.refresh import GrantContext, GrantRevoked, RefreshToken

if TYPE_CHECKING:
    from smart_auth.server import SmartAuthorizationServer

log = logging.getLogger("phr.auth")
MAX_SCOPE_CHARS = 4096


def check_system_scopes(requested: str | None, client: Client) -> str:
    """The granted scope text: `system/` resource scopes only, each within the registration.

    SMART: the server "SHALL mediate" what a backend client may get, so a request beyond the
    registration is refused (`invalid_scope`), not silently narrowed (security catalogue TE-12).
    """
    if not requested or not requested.strip():
        raise InvalidScopeError("scope is required.")
    if len(requested) > MAX_SCOPE_CHARS:
        raise InvalidScopeError("scope is too long.")
    scopes = parse_scopes(requested)
    if scopes.unknown:
        raise InvalidScopeError("scope holds values that are not SMART scopes.")
    if scopes.special or any(s.context != "system" for s in scopes.resources):
        raise InvalidScopeError("client_credentials grants system/ scopes only.")
    allowed = client.allowed_scopes.resources
    if not all(any(within(s, a) for a in allowed) for s in scopes.resources):
        raise InvalidScopeError("scope exceeds what the client is registered for.")
    return " ".join(s.text for s in scopes.resources)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 section 4.4 for SMART backend services; no refresh token (SMART SHOULD NOT)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]

    def validate_token_request(self) -> None:
        client: Client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client may not use grant_type=client_credentials.")
        self.request.client = client
        self.request.scope = check_system_scopes(self.request.payload.scope, client)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        # Authlib's version mints with the requested scope text; mint with the granted one.
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


# -- authorization code and refresh ------------------------------------------------------------

# RFC 7636 section 4.1: 43-128 unreserved characters.
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
USER_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


def check_code_verifier(verifier: str | None, challenge: str) -> None:
    """PKCE S256 (RFC 7636 section 4.6); the code is already spent, so no retry is possible."""
    if verifier is None:
        raise InvalidGrantError("code_verifier is required (PKCE).")
    if not _VERIFIER.match(verifier):
        raise InvalidRequestError("code_verifier is malformed.")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    if not hmac.compare_digest(computed, challenge):
        raise InvalidGrantError("code_verifier does not match the code_challenge.")


def check_narrower(requested: str | None, granted: str) -> str:
    """A refresh may narrow the grant's scope, never widen it (RFC 6749 section 6)."""
    if not requested:
        return granted
    asked, allowed = parse_scopes(requested), parse_scopes(granted)
    widens = (
        bool(asked.unknown)
        or not asked.special <= allowed.special
        or not all(any(within(r, a) for a in allowed.resources) for r in asked.resources)
    )
    if widens:
        raise InvalidScopeError("scope may only narrow the original grant.")
    return " ".join(dict.fromkeys(requested.split()))


class _UserGrant:
    """What the code and refresh grants share: client checks and token issuance."""

    GRANT_TYPE: str
    server: SmartAuthorizationServer
    request: Any
    authenticate_token_endpoint_client: Callable[[], Client]  # Authlib's BaseGrant
    TOKEN_RESPONSE_HEADER: list[tuple[str, str]]  # Authlib's: JSON, no-store, no-cache

    def checked_client(self) -> Client:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client may not use grant_type={self.GRANT_TYPE}.")
        return client

    def respond(
        self,
        context: GrantContext,
        scope: str,
        code: AuthorizationCode | None,
        commit: Callable[[], bool],
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        try:
            body = self.server.issue_tokens(context, scope, code, commit)
        except GrantRevoked:
            raise InvalidGrantError(
                "The code or refresh token was used twice; the tokens issued for it are revoked."
            ) from None
        return 200, body, list(self.TOKEN_RESPONSE_HEADER)


class AuthorizationCodeGrant(_UserGrant, grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """RFC 6749 section 4.1.3, token side only (the authorization side is `authorize.py`)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = USER_AUTH_METHODS

    def validate_authorization_request(self) -> None:
        raise UnauthorizedClientError("Use /auth/authorize.")  # never routed here

    def validate_token_request(self) -> None:
        client = self.checked_client()
        form = self.request.form
        if not form.get("code"):
            raise InvalidRequestError("Missing 'code' parameter.")
        try:
            code = self.server.codes.find(form["code"], client.client_id)
        except CodeReplayed as replay:
            self.server.grants.revoke_family(replay.grant)
            raise InvalidGrantError(
                "The code was already used; the tokens issued for it are revoked."
            ) from None
        if code is None:
            raise InvalidGrantError("The code is invalid or has expired.")
        try:
            if form.get("redirect_uri") != code.redirect_uri:
                raise InvalidGrantError("redirect_uri does not match the authorization request.")
            check_code_verifier(form.get("code_verifier"), code.code_challenge)
        except OAuth2Error:
            self.server.codes.spend(form["code"])  # one attempt per code, failed or not
            raise
        self.request.client = client
        self.request.authorization_code = code

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: AuthorizationCode = self.request.authorization_code
        context = GrantContext(
            family=code.grant,
            client_id=code.client_id,
            sub=code.sub,
            fhir_user=code.fhir_user,
            patient=code.patient,
            need_patient_banner=code.need_patient_banner,
            session=code.session,
        )
        value = self.request.form["code"]
        return self.respond(context, code.scope, code, lambda: self.server.codes.spend(value))


class RefreshTokenGrant(_UserGrant, grants.RefreshTokenGrant):  # type: ignore[misc]
    """RFC 6749 section 6 with rotation and reuse detection (RFC 9700 section 4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = USER_AUTH_METHODS

    def validate_token_request(self) -> None:
        client = self.checked_client()
        form = self.request.form
        if not form.get("refresh_token"):
            raise InvalidRequestError("Missing 'refresh_token' parameter.")
        token: RefreshToken | None = self.server.grants.find(form["refresh_token"])
        # Another client's token is refused untouched: presenting it must not revoke the grant.
        if token is None or not token.check_client(client):
            raise InvalidGrantError("The refresh token is invalid or has expired.")
        scope = check_narrower(form.get("scope"), token.scope)
        if token.revoked:
            raise InvalidGrantError("The refresh token is no longer valid.")
        if token.used:
            log.warning("refresh token reuse: revoking grant family")
            self.server.grants.revoke_family(token.context.family)
            raise InvalidGrantError("The refresh token is no longer valid.")
        if not self.server.still_authorized(token.context):
            self.server.grants.revoke_family(token.context.family)
            raise InvalidGrantError("The authorization behind this token has ended.")
        self.request.client = client
        self.request.refresh_token = token
        self.request.scope = scope

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token: RefreshToken = self.request.refresh_token
        grants = self.server.grants
        return self.respond(token.context, self.request.scope, None, lambda: grants.spend(token))
