"""Redeeming codes: PKCE, single use, binding (catalogue AC), id_tokens (SMART checklist 4),
introspection mirroring (checklist 6), userinfo and OpenID discovery."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from smart_auth.codes import AuthorizationCode, CodeStore
from smart_auth.store import AuthStore
from smart_auth.tokens import InvalidToken
from tests.smart_auth.browser import Browser
from tests.smart_auth.conftest import AuthServer
from tests.smart_auth.flows import (
    REDIRECT_URI,
    App,
    Request,
    User,
    add_user,
    approve,
    authorization_request,
    exchange,
    launch,
    register_app,
)
from tests.smart_auth.helpers import basic, jwt_parts, oauth_error


def code_for(
    server: AuthServer, browser: Browser, app: App, user: User, **overrides: str | None
) -> tuple[str, Request]:
    request = authorization_request(server, app, **overrides)
    answer = approve(browser, server, app, user, request)
    return answer["code"], request


@pytest.fixture
def public(auth_server: AuthServer) -> App:
    return register_app(auth_server)


@pytest.fixture
def user(auth_server: AuthServer) -> User:
    return add_user(auth_server)


# -- PKCE (AC-04..AC-08) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verifier", "error"),
    [
        (None, "invalid_grant"),  # AC-06
        ("w" * 43, "invalid_grant"),  # AC-07: well-formed, wrong
        ("w" * 42, "invalid_request"),  # too short
        ("w" * 129, "invalid_request"),  # too long
        ("a+b/c=" + "w" * 40, "invalid_request"),  # characters outside the unreserved set
    ],
)
def test_pkce_verifier_must_match_and_a_failure_spends_the_code(
    auth_server: AuthServer, browser: Browser, public: App, user: User, verifier, error
) -> None:
    code, request = code_for(auth_server, browser, public, user)
    oauth_error(exchange(browser.http, auth_server, public, code, verifier), 400, error)
    # The code is spent: the right verifier cannot be tried afterwards.
    retry = exchange(browser.http, auth_server, public, code, request.verifier)
    oauth_error(retry, 400, "invalid_grant")


def test_confidential_clients_need_pkce_too(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server, "client_secret_basic"), add_user(auth_server)
    request = authorization_request(auth_server, app, code_challenge=None)
    r = browser.http.get("/auth/authorize", params=request.params)
    assert r.status_code == 303 and "error=invalid_request" in r.headers["location"]
    code, request = code_for(auth_server, browser, app, user)
    oauth_error(exchange(browser.http, auth_server, app, code, None), 400, "invalid_grant")


def test_a_reused_code_challenge_is_refused(
    auth_server: AuthServer, browser: Browser, public: App, user: User
) -> None:
    """Catalogue AC-09: one code per challenge; the second approval is an error redirect."""
    first = authorization_request(auth_server, public)
    assert "code" in approve(browser, auth_server, public, user, first)
    again = authorization_request(
        auth_server, public, code_challenge=first.params["code_challenge"]
    )
    answer = approve(browser, auth_server, public, user, again)
    assert answer["error"] == "invalid_request" and "code" not in answer
    assert answer["state"] == again.state


# -- single use, binding, lifetime ---------------------------------------------------------------


def test_code_replay_is_refused_and_revokes_what_the_code_issued(
    auth_server: AuthServer, browser: Browser, public: App, user: User, resource_server
) -> None:
    """AC-01: the second redemption fails and the first one's tokens die."""
    code, request = code_for(auth_server, browser, public, user)
    first = exchange(browser.http, auth_server, public, code, request.verifier).json()
    replay = exchange(browser.http, auth_server, public, code, request.verifier)
    oauth_error(replay, 400, "invalid_grant")

    client, secret = resource_server
    r = browser.http.post(
        "/auth/introspect",
        data={"token": first["access_token"]},
        headers=basic(client.client_id, secret),
    )
    assert r.json() == {"active": False}
    with pytest.raises(InvalidToken):
        auth_server.services.tokens.verify(first["access_token"], auth_server.fhir_base)
    data = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": public.client_id,
    }
    oauth_error(browser.http.post("/auth/token", data=data), 400, "invalid_grant")


def test_redirect_uri_must_match_the_authorization_request(
    auth_server: AuthServer, browser: Browser, user: User
) -> None:
    """AC-23: both URIs registered, but the code was issued for the first."""
    other = "https://app.example.com/other"
    app = register_app(auth_server, redirect_uris=(REDIRECT_URI, other))
    code, request = code_for(auth_server, browser, app, user)
    for uri in (other, None):
        r = exchange(browser.http, auth_server, app, code, request.verifier, redirect_uri=uri)
        oauth_error(r, 400, "invalid_grant")


def test_expired_code_is_invalid_grant(
    auth_server: AuthServer, browser: Browser, public: App, user: User
) -> None:
    """AC-22: a code issued 61 s ago (its lifetime is 60 s)."""
    services = auth_server.services
    past = AuthStore(
        services.store.client,
        services.settings.db_name,
        services.store.sealer,
        lambda: time.time() - 61,
    )
    request = authorization_request(auth_server, public)
    code = CodeStore(past, 60).issue(
        AuthorizationCode(
            client_id=public.client_id,
            redirect_uri=REDIRECT_URI,
            code_challenge=request.params["code_challenge"],
            scope="patient/*.rs",
            sub=user.account.sub,
            fhir_user=user.fhir_user,
            patient="alice",
            nonce=None,
            auth_time=int(time.time() - 61),
            grant=secrets.token_urlsafe(16),
            session=None,
            need_patient_banner=True,
        )
    )
    r = exchange(browser.http, auth_server, public, code, request.verifier)
    oauth_error(r, 400, "invalid_grant")


@pytest.mark.parametrize("code", ["", "garbage", "x" * 200])
def test_unknown_code_is_invalid_grant_or_request(
    auth_server: AuthServer, http: httpx.Client, public: App, code: str
) -> None:
    r = exchange(http, auth_server, public, code, "v" * 43)
    oauth_error(r, 400, "invalid_request" if not code else "invalid_grant")


def test_confidential_client_must_authenticate(
    auth_server: AuthServer, browser: Browser, user: User
) -> None:
    app = register_app(auth_server, "client_secret_basic")
    code, request = code_for(auth_server, browser, app, user)
    as_public = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": request.verifier,
        "client_id": app.client_id,
    }
    oauth_error(browser.http.post("/auth/token", data=as_public), (400, 401), "invalid_client")
    wrong = browser.http.post(
        "/auth/token", data=as_public, headers=basic(app.client_id, "wrong-secret")
    )
    oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")


def test_client_without_the_authorization_code_grant_cannot_authorize(
    auth_server: AuthServer, browser: Browser
) -> None:
    app = register_app(auth_server, "client_secret_basic", grant_types=["client_credentials"])
    r = browser.http.get("/auth/authorize", params=authorization_request(auth_server, app).params)
    assert r.status_code == 303 and "error=unauthorized_client" in r.headers["location"]


# -- id_token (SMART checklist 4, catalogue IR-10) -----------------------------------------------


def test_id_token_is_rs256_with_kid_iss_aud_fhiruser_and_nonce(
    auth_server: AuthServer, browser: Browser, public: App, user: User
) -> None:
    code, request = code_for(auth_server, browser, public, user)
    body = exchange(browser.http, auth_server, public, code, request.verifier).json()
    id_token = body["id_token"]

    header, claims = jwt_parts(id_token)
    assert header["alg"] == "RS256"
    config = browser.http.get("/.well-known/openid-configuration").json()
    jwks = browser.http.get(config["jwks_uri"]).json()
    rsa = [k for k in jwks["keys"] if k["kty"] == "RSA"]
    assert header["kid"] in {k["kid"] for k in rsa}
    verified = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert verified.claims == claims
    assert claims["iss"] == config["issuer"] == auth_server.settings.issuer_url
    assert claims["aud"] == public.client_id
    assert claims["sub"] == user.account.sub and 0 < len(claims["sub"]) <= 255
    assert claims["fhirUser"] == "Patient/alice"
    assert claims["nonce"] == request.params["nonce"]
    now = time.time()
    assert claims["iat"] <= now + 5 < claims["exp"] + 5 and claims["exp"] > now
    assert abs(claims["auth_time"] - now) < 60
    # The access token names the same user (introspection mirrors it; checklist 6.7).
    assert jwt_parts(body["access_token"])[1]["sub"] == claims["sub"]


def test_no_id_token_without_openid_and_no_fhiruser_without_its_scope(
    auth_server: AuthServer, public: App, user: User
) -> None:
    body = launch(auth_server, public, user, "launch/patient patient/*.rs")
    assert "id_token" not in body
    body = launch(auth_server, public, user, "openid launch/patient patient/*.rs")
    claims = jwt_parts(body["id_token"])[1]
    assert "fhirUser" not in claims and claims["sub"] == user.account.sub


def test_openid_configuration_has_the_required_fields(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    r = http.get("/.well-known/openid-configuration", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    config = r.json()
    for name in (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "userinfo_endpoint",
    ):
        assert config[name], name
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    assert config["issuer"] == auth_server.settings.issuer_url
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert http.get(config["authorization_endpoint"]).status_code == 400  # it exists


# -- introspection and userinfo ------------------------------------------------------------------


def test_introspection_mirrors_the_token_response_and_id_token(
    auth_server: AuthServer, public: App, user: User, http: httpx.Client, resource_server
) -> None:
    body = launch(auth_server, public, user)
    client, secret = resource_server
    r = http.post(
        "/auth/introspect",
        data={"token": body["access_token"]},
        headers=basic(client.client_id, secret),
    )
    info = r.json()
    id_claims = jwt_parts(body["id_token"])[1]
    assert info["active"] is True
    assert info["client_id"] == public.client_id
    assert sorted(info["scope"].split()) == sorted(body["scope"].split())
    assert info["exp"] == info["iat"] + body["expires_in"]
    assert info["patient"] == body["patient"]
    assert info["iss"] == id_claims["iss"] and info["sub"] == id_claims["sub"]
    assert info["fhirUser"] == id_claims["fhirUser"]

    refresh = http.post(
        "/auth/introspect",
        data={"token": body["refresh_token"]},
        headers=basic(client.client_id, secret),
    ).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    assert refresh["client_id"] == public.client_id and refresh["patient"] == "alice"


def test_userinfo_answers_for_openid_tokens(
    auth_server: AuthServer, public: App, user: User, http: httpx.Client
) -> None:
    body = launch(auth_server, public, user)
    r = http.get("/auth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert r.json() == {"sub": user.account.sub, "fhirUser": "Patient/alice"}

    plain = launch(auth_server, public, user, "launch/patient patient/*.rs")
    r = http.get("/auth/userinfo", headers={"Authorization": f"Bearer {plain['access_token']}"})
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    r = http.get("/auth/userinfo", headers={"Authorization": "Bearer garbage"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    r = http.get("/auth/userinfo")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert json.loads(r.text) == {}
