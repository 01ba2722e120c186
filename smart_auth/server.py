"""The authorization server: Authlib's framework-agnostic core, adapted to pre-read requests.

The router reads each request in async code (`FormRequest`: method, URL, headers, form pairs) and
calls `token_response` / `introspection_response` / `revocation_response` through
`store.run_sync`; everything here is synchronous, as Authlib's hooks are. Responses come back as
`OAuthResponse` values that the router renders, so this module knows no web framework.

RFC 6749 token endpoint: https://www.rfc-editor.org/rfc/rfc6749#section-3.2
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientAuthentication,
    InvalidRequestError,
    JsonRequest,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.requests import JsonPayload, OAuth2Payload

from smart_auth.accounts import AccountRegistry
from smart_auth.client_auth import BasicAuthentication, PrivateKeyJWT, check_one_auth_mechanism
from smart_auth.clients import Client, ClientRegistry
from smart_auth.codes import AuthorizationCode, CodeStore
from smart_auth.endpoints import IntrospectionEndpoint, IssuedToken, RevocationEndpoint
from smart_auth.grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant
from smart_auth.id_tokens import IdTokenService
from smart_auth.refresh import GrantContext, GrantStore, RefreshToken
from smart_auth.sessions import SessionStore
from smart_auth.settings import AuthSettings
from smart_auth.store import AuthStore
from smart_auth.tokens import AccessToken, InvalidToken, TokenService

log = logging.getLogger("phr.auth")


@dataclass(frozen=True)
class FormRequest:
    """An OAuth request already read from the wire."""

    method: str
    url: str  # the public URL of the endpoint (what client assertions name as `aud`)
    headers: Mapping[str, str]  # case-insensitive (Starlette `Headers`)
    form: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class JsonBodyRequest:
    """A request with a JSON object body (dynamic client registration, a later slice)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class OAuthResponse:
    """What Authlib answered: status, JSON body, headers."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]]


class _FormPayload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, pairs: tuple[tuple[str, str], ...]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in pairs:
            self._datalist[name].append(value)
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _FormOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """Authlib reads `form` (client authentication) and `payload` (grants, duplicate checks)."""

    def __init__(self, request: FormRequest) -> None:
        super().__init__(request.method, request.url, headers=request.headers)
        self.payload = _FormPayload(request.form)

    @property
    def args(self) -> dict[str, str]:
        return {}  # OAuth parameters of these endpoints travel in the body only

    @property
    def form(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    @property
    def data(self) -> dict[str, Any]:
        return self._body


def check_no_repeated_parameters(form: tuple[tuple[str, str], ...]) -> None:
    """RFC 6749 section 3.2: request parameters MUST NOT be included more than once."""
    names = [name for name, _ in form]
    if len(names) != len(set(names)):
        raise InvalidRequestError("A parameter is repeated.")


class SmartAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's `AuthorizationServer` with this project's storage, tokens and SMART rules."""

    def __init__(
        self,
        *,
        settings: AuthSettings,
        store: AuthStore,
        clients: ClientRegistry,
        tokens: TokenService,
        fhir_base: str,
        accounts: AccountRegistry,
        sessions: SessionStore,
        codes: CodeStore,
        grants: GrantStore,
        id_tokens: IdTokenService,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.clients = clients
        self.tokens = tokens
        self.fhir_base = fhir_base
        self.accounts = accounts
        self.sessions = sessions
        self.codes = codes
        self.grants = grants
        self.id_tokens = id_tokens
        # Created now, not lazily on the first request: the server is shared by threads.
        self._client_auth = ClientAuthentication(self.query_client)
        self.register_client_auth_method("client_secret_basic", BasicAuthentication(clients))
        self.register_client_auth_method(
            "private_key_jwt",
            PrivateKeyJWT(
                store,
                token_endpoint=settings.token_endpoint,
                leeway=settings.clock_leeway,
            ),
        )
        self.register_token_generator("default", self._generate_token)
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(AuthorizationCodeGrant)
        self.register_grant(RefreshTokenGrant)
        self.register_endpoint(IntrospectionEndpoint)
        self.register_endpoint(RevocationEndpoint)

    # -- Authlib hooks ---------------------------------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        # Refresh tokens arrive with the authorization-code slice (`refresh.py`): stored hashed
        # in `tokens` with a `family` for rotation and reuse detection.
        token, claims = self.tokens.mint(
            audience=self.fhir_base,
            client_id=client.client_id,
            # RFC 9068 section 2.2: without a resource owner, `sub` identifies the client.
            subject=user.get_user_id() if user is not None else client.client_id,
            scope=scope or "",
            patient=getattr(user, "patient", None),
            fhir_user=getattr(user, "fhir_user", None),
            lifetime=expires_in,
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": claims.exp - claims.iat,
            "scope": claims.scope,
        }

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Nothing to persist for client_credentials: access tokens are self-contained JWTs that
        die by expiry or the denylist. User grants record their tokens in `issue_tokens`."""

    # -- user grants (authorization code, refresh) -----------------------------------------------

    def issue_tokens(
        self,
        context: GrantContext,
        scope: str,
        code: AuthorizationCode | None,
        commit: Callable[[], bool],
    ) -> dict[str, Any]:
        """The SMART token response for a user grant; its tokens recorded under the grant, then
        `commit` (`GrantRevoked` when it fails: refresh.py)."""
        token, claims = self.tokens.mint(
            audience=self.fhir_base,
            client_id=context.client_id,
            subject=context.sub,
            scope=scope,
            patient=context.patient,
            fhir_user=context.fhir_user,
        )
        scopes = set(scope.split())
        refresh = self.grants.issue(
            context,
            scope=scope,
            access=claims,
            refresh_until=self._refresh_until(context, scopes),
            commit=commit,
        )
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": claims.exp - claims.iat,
            "scope": scope,
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        if context.patient is not None:
            body["patient"] = context.patient
        body["need_patient_banner"] = context.need_patient_banner
        body["smart_style_url"] = self.settings.public_base + "/auth/smart-style.json"
        if code is not None and "openid" in scopes:
            identity = bool(scopes & {"fhirUser", "profile"})
            body["id_token"] = self.id_tokens.mint(
                client_id=context.client_id,
                sub=context.sub,
                auth_time=code.auth_time,
                nonce=code.nonce,
                fhir_user=context.fhir_user if identity else None,
            )
        return body

    def _refresh_until(self, context: GrantContext, scopes: set[str]) -> float | None:
        """When a new refresh token would expire; None when none may be issued."""
        client = self.clients.get(context.client_id)
        if client is None or not client.check_grant_type("refresh_token"):
            return None
        if "offline_access" in scopes:
            return self.store.clock() + self.settings.refresh_token_lifetime
        if "online_access" in scopes and context.session is not None:
            session = self.sessions.alive(context.session)
            return session.absolute_expiry if session is not None else None
        return None

    def still_authorized(self, context: GrantContext) -> bool:
        """The user still exists as the same FHIR user; an online grant's session still lives."""
        account = self.accounts.by_sub(context.sub)
        if account is None or account.fhir_user != context.fhir_user:
            return False
        return context.session is None or self.sessions.alive(context.session) is not None

    def create_oauth2_request(self, request: FormRequest | OAuth2Request) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return _FormOAuth2Request(request)

    def create_json_request(self, request: JsonBodyRequest) -> JsonRequest:
        json_request = JsonRequest(request.method, request.url, request.headers)
        json_request.payload = _JsonPayload(request.body)
        return json_request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> OAuthResponse:
        return OAuthResponse(status, dict(body), list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        log.debug("oauth signal %s", name)

    # -- token lookups for introspection and revocation ------------------------------------------

    def find_access_token(self, token: str) -> IssuedToken | None:
        """One of our access tokens, with its state; None for anything else."""
        try:
            claims = self.tokens.decode(token)
        except InvalidToken:
            return None
        expired = claims.exp <= self.store.clock()
        revoked = not expired and self.tokens.denylist.is_revoked(claims.jti)
        return IssuedToken(claims, expired, revoked)

    def revoke_access_token(self, claims: AccessToken) -> None:
        self.tokens.denylist.revoke(claims.jti, claims.exp, claims.client_id)

    def find_token(self, token: str) -> IssuedToken | RefreshToken | None:
        """An access token or a refresh token of ours (RFC 7662/7009: search every type)."""
        found = self.find_access_token(token)
        return found if found is not None else self.grants.find(token)

    # -- entry points (blocking; the router calls them through `run_sync`) ------------------------

    def token_response(self, request: FormRequest) -> OAuthResponse:
        def respond(request: FormRequest) -> OAuthResponse:
            if not dict(request.form).get("grant_type"):
                raise InvalidRequestError("Missing 'grant_type' parameter.")
            response: OAuthResponse = self.create_token_response(request)
            return response

        return self._guarded(request, respond)

    def introspection_response(self, request: FormRequest) -> OAuthResponse:
        return self._guarded(request, lambda r: self.create_endpoint_response("introspection", r))

    def revocation_response(self, request: FormRequest) -> OAuthResponse:
        return self._guarded(request, lambda r: self.create_endpoint_response("revocation", r))

    def error_response(self, error: OAuth2Error) -> OAuthResponse:
        response: OAuthResponse = self.handle_error_response(None, error)
        return response

    def _guarded(
        self, request: FormRequest, respond: Callable[[FormRequest], OAuthResponse]
    ) -> OAuthResponse:
        """Checks common to every endpoint, and RFC 6749 errors for whatever goes wrong."""
        try:
            check_no_repeated_parameters(request.form)
            check_one_auth_mechanism(request.headers, dict(request.form))
            return respond(request)
        except OAuth2Error as error:
            return self.error_response(error)
        except (ValueError, TypeError, KeyError, UnicodeError):
            # Last line: hostile input that slipped past the checks is a 400, never a 500.
            log.warning("malformed OAuth request refused", exc_info=True)
            return self.error_response(InvalidRequestError("The request is malformed."))
