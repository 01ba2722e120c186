"""The authorization request (RFC 6749 section 4.1.1 as SMART App Launch 2.2 profiles it).

`validate_authorization_request` runs one small named check per rule. Until the client and its
redirect URI are known good, a failure is an error *page* (`ErrorPage`): the browser is never sent
to an unverified URI (RFC 6749 section 4.1.2.1, catalogue AC-10, AC-11, AC-15). After that, a
failure is an error *redirect* (`RedirectError`) carrying `state` and `iss` (RFC 9207).

A valid request is stored server-side (`authorization_requests`, TTL) while the user logs in and
approves; the pages carry only its random id, so nothing a form sends can widen it (SL-05).

Authlib's authorization-endpoint machinery is not used: its single-call flow does not fit a
request that spans a login and an approval page, and these checks are stricter (S256 only).

SMART authorization request: https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#request-4
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.common.urls import add_params_to_uri

from consent.scopes import parse_scopes, within
from smart_auth.clients import Client, ClientRegistry
from smart_auth.launches import LaunchContexts
from smart_auth.store import AuthStore, Document, utc

MAX_STATE_CHARS = 2048
MAX_NONCE_CHARS = 512
MAX_SCOPE_CHARS = 4096
# RFC 7636 section 4.2: BASE64URL(SHA256(verifier)) is always 43 characters.
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
    "nonce",
    "prompt",
)
# Scopes that need a patient chosen at approval time (SMART launch context).
_PATIENT_CONTEXT = ("launch/patient", "launch")


class ErrorPage(Exception):
    """Shown to the user at the authorization server; no redirect."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RedirectError(Exception):
    """An RFC 6749 section 4.1.2.1 error, sent to the client's verified redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request (what the user is asked to approve)."""

    id: str
    client_id: str
    client_name: str
    redirect_uri: str
    scope: str  # requested, within the registration; in request order
    state: str | None
    code_challenge: str
    nonce: str | None
    prompt: str | None
    launch_patient: str | None  # EHR launch: the patient of the launch context
    created_at: float
    login_session: str | None = None  # the session whose login was made for this request

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    @property
    def ehr_launch(self) -> bool:
        return self.launch_patient is not None

    @property
    def needs_patient(self) -> bool:
        """A patient must be chosen: `launch/patient`, EHR launch, or `patient/` scopes."""
        parsed = parse_scopes(self.scope)
        return (
            self.ehr_launch
            or "launch/patient" in parsed.special
            or any(s.context == "patient" for s in parsed.resources)
        )

    def to_document(self, expires_at: float) -> Document:
        doc: Document = {n: getattr(self, n) for n in self.__dataclass_fields__}
        doc["_id"] = doc.pop("id")
        return {**doc, "expires_at": utc(expires_at)}

    @classmethod
    def from_document(cls, doc: Document) -> AuthorizationRequest:
        values: dict[str, Any] = {n: doc.get(n) for n in cls.__dataclass_fields__ if n != "id"}
        return cls(id=doc["_id"], **values)


def redirect_with(redirect_uri: str, params: Mapping[str, str | None]) -> str:
    """`redirect_uri` plus the response parameters (its own query kept; RFC 6749 3.1.2)."""
    return str(add_params_to_uri(redirect_uri, [(k, v) for k, v in params.items() if v]))


# -- the checks, in order ------------------------------------------------------------------------


def check_single_values(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """RFC 6749 section 3.1: parameters sent without a value are omitted; none may repeat."""
    names = [name for name, _ in pairs if name in PARAMETERS]
    if len(names) != len(set(names)):
        raise ErrorPage("The authorization request repeats a parameter.")
    return {name: value for name, value in pairs if name in PARAMETERS}


def check_client(params: Mapping[str, str], clients: ClientRegistry) -> Client:
    client = clients.get(params.get("client_id"))
    if client is None:
        raise ErrorPage("The application that sent you here is not registered with this server.")
    return client


def check_redirect_uri(params: Mapping[str, str], client: Client) -> str:
    """Exact string match with a registered URI (loopback port excepted); SMART requires it."""
    uri = params.get("redirect_uri")
    if not uri:
        raise ErrorPage("The application did not say where to send you back (redirect_uri).")
    if client.check_redirect_uri(uri):
        return uri
    raise ErrorPage("The application asked to send you to an address it has not registered.")


def check_state(params: Mapping[str, str]) -> str | None:
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE_CHARS:
        raise RedirectError("invalid_request", "state is too long.")
    return state


def check_response_type(params: Mapping[str, str], client: Client) -> None:
    if params.get("response_type") != "code":
        raise RedirectError("unsupported_response_type", "Only response_type=code is supported.")
    if not client.check_grant_type("authorization_code"):
        raise RedirectError("unauthorized_client", "The client may not use authorization codes.")


def check_aud(params: Mapping[str, str], fhir_base: str) -> None:
    """SMART: `aud` must name this server's FHIR base, so tokens never go to another server."""
    aud = params.get("aud")
    if aud is None or aud.rstrip("/") != fhir_base.rstrip("/"):
        raise RedirectError("invalid_request", "aud must be this server's FHIR base URL.")


def check_pkce(params: Mapping[str, str]) -> str:
    """PKCE with S256, for every client (RFC 9700 section 2.1.1); `plain` is refused."""
    challenge = params.get("code_challenge")
    if challenge is None:
        raise RedirectError("invalid_request", "code_challenge is required (PKCE).")
    if params.get("code_challenge_method") != "S256":
        raise RedirectError("invalid_request", "code_challenge_method must be S256.")
    if not _S256_CHALLENGE.match(challenge):
        raise RedirectError("invalid_request", "code_challenge is not an S256 challenge.")
    return challenge


def check_scope(params: Mapping[str, str], client: Client, launching: bool) -> str:
    """The requested scopes the client is registered for (patient/ and user/ resource scopes,
    special scopes); others are dropped (RFC 6749 section 3.3). Nothing left is `invalid_scope`."""
    text = params.get("scope", "")
    if len(text) > MAX_SCOPE_CHARS:
        raise RedirectError("invalid_scope", "scope is too long.")
    allowed = client.allowed_scopes
    kept: list[str] = []
    for item in dict.fromkeys(text.split()):
        parsed = parse_scopes(item)
        if item in parsed.special:
            ok = item in allowed.special and (item != "launch" or launching)
        else:
            ok = any(
                r.context in ("patient", "user") and any(within(r, a) for a in allowed.resources)
                for r in parsed.resources
            )
        if ok:
            kept.append(item)
    if not kept:
        raise RedirectError("invalid_scope", "None of the requested scopes may be granted.")
    return " ".join(kept)


def check_launch(params: Mapping[str, str], client: Client, launches: LaunchContexts) -> str | None:
    """EHR launch: `launch` must be a live launch value minted for this client."""
    value = params.get("launch")
    if value is None:
        return None
    context = launches.get(value, client.client_id)
    if context is None:
        raise RedirectError("invalid_request", "The launch value is unknown or has expired.")
    if "launch" not in params.get("scope", "").split():
        raise RedirectError("invalid_scope", "An EHR launch needs the launch scope.")
    if "launch" not in client.allowed_scopes.special:
        raise RedirectError("invalid_scope", "The client is not registered for EHR launch.")
    return context.patient


def check_nonce(params: Mapping[str, str]) -> str | None:
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > MAX_NONCE_CHARS:
        raise RedirectError("invalid_request", "nonce is too long.")
    return nonce


def check_prompt(params: Mapping[str, str]) -> str | None:
    prompt = params.get("prompt")
    if prompt is not None and prompt not in ("none", "login", "consent"):
        raise RedirectError("invalid_request", "prompt must be none, login or consent.")
    return prompt


@dataclass(frozen=True)
class Verified:
    """The client and redirect URI of a request once known good (errors may now redirect)."""

    client: Client
    redirect_uri: str
    state: str | None


def verify_client(
    pairs: tuple[tuple[str, str], ...], clients: ClientRegistry
) -> tuple[dict[str, str], Verified]:
    """The checks whose failure is an error page (blocking)."""
    params = check_single_values(pairs)
    client = check_client(params, clients)
    redirect_uri = check_redirect_uri(params, client)
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE_CHARS:
        state = None  # not echoed: `check_state` refuses the request
    return params, Verified(client, redirect_uri, state)


def validate_authorization_request(
    params: Mapping[str, str],
    verified: Verified,
    *,
    fhir_base: str,
    launches: LaunchContexts,
    now: float,
) -> AuthorizationRequest:
    """The checks whose failure is an error redirect (blocking: the launch lookup)."""
    client = verified.client
    state = check_state(params)
    check_response_type(params, client)
    check_aud(params, fhir_base)
    challenge = check_pkce(params)
    launch_patient = check_launch(params, client, launches)
    scope = check_scope(params, client, launching=launch_patient is not None)
    return AuthorizationRequest(
        id=secrets.token_urlsafe(16),
        client_id=client.client_id,
        client_name=client.name,
        redirect_uri=verified.redirect_uri,
        scope=scope,
        state=state,
        code_challenge=challenge,
        nonce=check_nonce(params),
        prompt=check_prompt(params),
        launch_patient=launch_patient,
        created_at=now,
    )


class PendingRequests:
    """Validated requests waiting for login and approval (blocking calls; see store.py)."""

    def __init__(self, store: AuthStore, lifetime: int) -> None:
        self.store = store
        self.lifetime = lifetime

    def save(self, request: AuthorizationRequest) -> None:
        self.store.authorization_requests.insert_one(
            request.to_document(self.store.clock() + self.lifetime)
        )

    def get(self, request_id: Any) -> AuthorizationRequest | None:
        if not isinstance(request_id, str) or len(request_id) > 64:
            return None
        doc = self.store.authorization_requests.find_one(
            {"_id": request_id, "expires_at": {"$gt": self.store.now()}}
        )
        return AuthorizationRequest.from_document(doc) if doc else None

    def logged_in(self, request_id: str, session_key: str) -> None:
        """Record that the user logged in for this request (`prompt=login` is satisfied)."""
        self.store.authorization_requests.update_one(
            {"_id": request_id}, {"$set": {"login_session": session_key}}
        )

    def take(self, request_id: str) -> AuthorizationRequest | None:
        """Remove and return the request: one approval or denial per request."""
        requests = self.store.authorization_requests
        doc = requests.find_one({"_id": request_id, "expires_at": {"$gt": self.store.now()}})
        # the delete decides who took it (find_one_and_delete would scan on SecantusDB)
        if doc is None or requests.delete_one({"_id": request_id}).deleted_count != 1:
            return None
        return AuthorizationRequest.from_document(doc)
