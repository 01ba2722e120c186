"""Client authentication at the token, introspection and revocation endpoints.

- `PrivateKeyJWT`: RFC 7523 client assertions as SMART profiles them (ES384/RS384, `aud` = the
  token endpoint, `exp` at most five minutes ahead, no `iat` required, single-use `jti`).
- `BasicAuthentication`: RFC 6749 section 2.3.1 `client_secret_basic`, with one answer (401 +
  `WWW-Authenticate: Basic`) whether the client is unknown or the secret wrong.
- `check_one_auth_mechanism`: RFC 6749 section 2.3, one mechanism per request.

SMART asymmetric auth: https://hl7.org/fhir/smart-app-launch/STU2.2/client-confidential-asymmetric.html
RFC 7523: https://www.rfc-editor.org/rfc/rfc7523#section-3
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, OAuth2Request
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from smart_auth.batching import GroupInsert
from smart_auth.clients import CLIENT_ASSERTION_ALGS, Client, ClientRegistry
from smart_auth.store import AuthStore, utc

MAX_JTI_CHARS = 256
# SMART: the assertion's `exp` is "no more than five minutes in the future".
MAX_ASSERTION_LIFETIME = 300


def _refuse(description: str, status: int = 400) -> InvalidClientError:
    return InvalidClientError(description=description, status_code=status)


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """`private_key_jwt`: the client signs a short-lived JWT with a key it registered."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, store: AuthStore, *, token_endpoint: str, leeway: int) -> None:
        super().__init__(validate_jti=True, leeway=leeway)
        self.store = store
        self.token_endpoint = token_endpoint
        self.jtis = GroupInsert(store.jti)  # one insert_many for concurrent requests

    def __call__(self, query_client: Any, request: OAuth2Request) -> Client | None:
        client: Client | None = super().__call__(query_client, request)
        claimed = request.form.get("client_id")
        if client is not None and claimed is not None and claimed != client.client_id:
            raise _refuse("client_id does not match the assertion's subject.")
        return client

    def get_audiences(self) -> list[str]:
        return [self.token_endpoint]

    def resolve_client_public_key(self, client: Client) -> KeySet:
        return client.public_keys()

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        # Authlib's default is joserfc's "recommended" set (HS256, RS256, ES256): it would refuse
        # SMART's ES384/RS384. An explicit allow-list also keeps `none` and HS* out (TE-08/09).
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=CLIENT_ASSERTION_ALGS)
        except (JoseError, ValueError, TypeError):
            raise _refuse("The client assertion signature could not be verified.") from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        """SMART's claim rules, each a fixed message (nothing echoed from the assertion)."""
        now = self.store.clock()
        if claims.get("iss") != claims.get("sub"):
            raise _refuse("The assertion's iss and sub must both be the client_id.")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.token_endpoint not in audiences:
            raise _refuse("The assertion's aud must be the token endpoint URL.")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise _refuse("The assertion needs a numeric exp.")
        if exp + self.leeway <= now:
            raise _refuse("The client assertion has expired.")
        if exp > now + MAX_ASSERTION_LIFETIME + self.leeway:
            raise _refuse("The assertion's exp is more than five minutes ahead.")
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, int | float) or nbf > now + self.leeway):
            raise _refuse("The client assertion is not valid yet.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
            raise _refuse("The assertion needs a jti of at most 256 characters.")
        if not self.validate_jti(claims, jti):
            raise _refuse("The client assertion was already used (jti).")

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Record the jti until the assertion could no longer be accepted; False on replay.
        The unique `_id` makes concurrent double submission succeed once (TE-03); client ids
        cannot contain ':', so "client_id:jti" is unambiguous."""
        expires = float(claims["exp"]) + self.leeway
        return self.jtis.insert({"_id": f"{claims['sub']}:{jti}", "expires_at": utc(expires)})


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(client_id, secret) from `Authorization: Basic`, None without one; malformed -> 401."""
    scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise _refuse("Client authentication failed.", 401) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id or not secret:
        raise _refuse("Client authentication failed.", 401)
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before base64.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


class BasicAuthentication:
    """`client_secret_basic`, replacing Authlib's so unknown and wrong look alike (TE-01)."""

    def __init__(self, clients: ClientRegistry) -> None:
        self.clients = clients

    def __call__(self, query_client: Any, request: OAuth2Request) -> Client | None:
        credentials = basic_credentials(request.headers)
        if credentials is None:
            return None
        client = self.clients.authenticate_secret(*credentials)
        if client is None:
            raise _refuse("Client authentication failed.", 401)
        return client


def check_one_auth_mechanism(headers: Mapping[str, str], form: Mapping[str, str]) -> None:
    """RFC 6749 section 2.3: a client MUST NOT use more than one authentication method."""
    used = [
        (headers.get("authorization") or "").strip().lower().startswith("basic "),
        "client_secret" in form,
        "client_assertion" in form or "client_assertion_type" in form,
    ]
    if sum(used) > 1:
        raise InvalidRequestError("Use exactly one client authentication method.")
