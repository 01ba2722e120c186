"""Apps, users and the standalone / EHR launch journeys, driven over real HTTP."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc.jwk import Key

from smart_auth.accounts import Account
from smart_auth.clients import AuthMethod, Client
from tests.smart_auth.browser import Browser, forms, pkce, redirect_params
from tests.smart_auth.conftest import AuthServer
from tests.smart_auth.helpers import ASSERTION_TYPE, assertion, basic, es384_key, public_jwks

REDIRECT_URI = "https://app.example.com/cb"
APP_SCOPES = (
    "launch launch/patient openid fhirUser profile offline_access online_access "
    "patient/*.cruds user/*.cruds"
)
STANDALONE = "launch/patient openid fhirUser offline_access patient/*.rs"  # Inferno's default
EHR = "launch openid fhirUser offline_access patient/*.rs"


@dataclass
class App:
    client: Client
    secret: str | None = None
    key: Key | None = None  # private_key_jwt

    @property
    def client_id(self) -> str:
        return self.client.client_id

    def authenticate(self, server: AuthServer, form: dict[str, str]) -> dict[str, str]:
        """Add this client's credentials to a token request; returns the headers to send."""
        method = self.client.token_endpoint_auth_method
        if method == "none":
            form["client_id"] = self.client_id
        elif method == "client_secret_post":
            form |= {"client_id": self.client_id, "client_secret": self.secret or ""}
        elif method == "private_key_jwt":
            assert self.key is not None
            form |= {
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion(self.key, self.client_id, server.token_url),
            }
        else:
            return basic(self.client_id, self.secret or "")
        return {}


def register_app(
    server: AuthServer,
    method: AuthMethod = "none",
    *,
    scope: str = APP_SCOPES,
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
    **extra: Any,
) -> App:
    key = es384_key() if method == "private_key_jwt" else None
    client, secret = server.services.clients.register(
        name=f"App {uuid.uuid4().hex[:6]}",
        token_endpoint_auth_method=method,
        scope=scope,
        redirect_uris=redirect_uris,
        jwks=public_jwks(key) if key is not None else None,
        **extra,
    )
    return App(client, secret, key)


@dataclass
class User:
    username: str
    password: str
    account: Account

    @property
    def fhir_user(self) -> str:
        return self.account.fhir_user


def add_user(server: AuthServer, fhir_user: str = "Patient/alice", *, totp: bool = False) -> User:
    username, password = f"u{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(12)
    account = server.services.accounts.add(username, password, fhir_user, totp=totp)
    return User(username, password, account)


@dataclass
class Request:
    """An authorization request and what the app keeps to finish it."""

    params: dict[str, str]
    verifier: str
    state: str = field(init=False)

    def __post_init__(self) -> None:
        self.state = self.params["state"]


def authorization_request(
    server: AuthServer, app: App, scope: str = STANDALONE, **overrides: str | None
) -> Request:
    verifier, challenge = pkce()
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": str(uuid.uuid4()),
        "aud": server.fhir_base,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": secrets.token_urlsafe(8),
        **overrides,
    }
    return Request({k: v for k, v in params.items() if v is not None}, verifier)


def start(browser: Browser, request: Request, *, post: bool = False) -> httpx.Response:
    """Send the authorization request as the app's page would (GET, or an auto-posted form)."""
    if post:
        return browser.follow(browser.http.post("/auth/authorize", data=request.params))
    return browser.open("/auth/authorize", **request.params)


def is_login(page: httpx.Response) -> bool:
    return any(f.action == "/auth/login" for f in forms(page.text))


def log_in(browser: Browser, page: httpx.Response, user: User, **values: str) -> httpx.Response:
    assert page.status_code == 200 and is_login(page), (page.status_code, page.text[:300])
    return browser.submit(page, {"username": user.username, "password": user.password, **values})


def approve(
    browser: Browser,
    server: AuthServer,
    app: App,
    user: User,
    request: Request,
    *,
    untick: tuple[str, ...] = (),
    patient: str | None = None,
    post: bool = False,
    decision: str = "approve",
) -> dict[str, str]:
    """The whole browser journey; returns the parameters the app receives."""
    page = start(browser, request, post=post)
    if is_login(page):
        page = log_in(browser, page, user)
    assert page.status_code == 200, page.text[:500]
    (form,) = forms(page.text)
    assert form.action == "/auth/consent"
    values = {"patient": patient} if patient is not None else None
    ticked = [s for s in form.checkboxes if s not in untick]
    return redirect_params(
        browser.submit(page, values, scopes=ticked, button=("decision", decision))
    )


def exchange(
    http: httpx.Client,
    server: AuthServer,
    app: App,
    code: str,
    verifier: str | None,
    **overrides: str | None,
) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **overrides,
    }
    data = {k: v for k, v in form.items() if v is not None}
    headers = app.authenticate(server, data)
    return http.post("/auth/token", data=data, headers=headers)


def refresh(
    http: httpx.Client, server: AuthServer, app: App, token: str, scope: str | None = None
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token}
    if scope is not None:
        data["scope"] = scope
    headers = app.authenticate(server, data)
    return http.post("/auth/token", data=data, headers=headers)


def launch(
    server: AuthServer,
    app: App,
    user: User,
    scope: str = STANDALONE,
    **overrides: str | None,
) -> dict[str, Any]:
    """Standalone launch to the token response (asserting success)."""
    browser = Browser(server.url)
    try:
        request = authorization_request(server, app, scope, **overrides)
        answer = approve(browser, server, app, user, request)
        assert "code" in answer, answer
        r = exchange(browser.http, server, app, answer["code"], request.verifier)
        assert r.status_code == 200, r.text
        return dict(r.json())
    finally:
        browser.close()
