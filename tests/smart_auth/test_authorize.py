"""The authorization endpoint's checks: error pages vs error redirects (catalogue AC, SMART
checklist 2), and the headers of every page (SL-06, SL-07)."""

from __future__ import annotations

import httpx
import pytest

from smart_auth.services import AuthServices
from tests.smart_auth.browser import Browser, redirect_params
from tests.smart_auth.conftest import AuthServer, auth_app, auth_settings
from tests.smart_auth.flows import (
    REDIRECT_URI,
    App,
    add_user,
    approve,
    authorization_request,
    exchange,
    log_in,
    register_app,
    start,
)
from tests.support import EmbeddedDatabase


@pytest.fixture
def app(auth_server: AuthServer) -> App:
    return register_app(auth_server)


def assert_page_headers(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp  # no script allowed at all (default-src 'none')
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "same-origin"  # no-referrer: browsers send Origin: null
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in r.headers  # no CORS on the pages (MD-02)


def assert_error_page(r: httpx.Response) -> None:
    assert r.status_code == 400, (r.status_code, r.headers)
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    assert_page_headers(r)


def test_unknown_client_is_an_error_page_not_a_redirect(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    request = authorization_request(auth_server, app, client_id="no-such-client")
    assert_error_page(browser.http.get("/auth/authorize", params=request.params))
    request = authorization_request(auth_server, app, client_id=None)
    assert_error_page(browser.http.get("/auth/authorize", params=request.params))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        None,
        REDIRECT_URI + "/",
        "https://app.example.com/CB",
        "https://APP.example.com/cb",
        REDIRECT_URI + "?x=1",
        REDIRECT_URI + "#f",
        "https://app.example.com/cb/../evil",
        "https://app.example.com/cb%2F..%2Fevil",
        "https://app.example.com.evil.com/cb",
        "https://app.example.com@evil.com/cb",
        "https://app.example.com:443/cb",
        "http://app.example.com/cb",
    ],
)
def test_unregistered_redirect_uri_is_an_error_page(
    auth_server: AuthServer, browser: Browser, app: App, redirect_uri: str | None
) -> None:
    """Catalogue AC-10/AC-12: exact match only, and never a redirect to the unverified URI."""
    request = authorization_request(auth_server, app, redirect_uri=redirect_uri)
    r = browser.http.get("/auth/authorize", params=request.params)
    assert_error_page(r)


def test_errors_after_the_redirect_check_use_the_registered_uri_only(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    """AC-15: an invalid request with an attacker's redirect_uri gets a page, not a redirect."""
    request = authorization_request(
        auth_server, app, redirect_uri="https://evil.example/cb", response_type="token"
    )
    assert_error_page(browser.http.get("/auth/authorize", params=request.params))


def test_repeated_parameter_is_an_error_page(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    request = authorization_request(auth_server, app)
    params = [*request.params.items(), ("redirect_uri", "https://evil.example/cb")]
    assert_error_page(browser.http.get("/auth/authorize", params=params))


def error_redirect(browser: Browser, params: dict[str, str]) -> dict[str, str]:
    r = browser.http.get("/auth/authorize", params=params)
    answer = redirect_params(r)
    assert r.headers["location"].startswith(REDIRECT_URI + "?")
    assert "code" not in answer
    return answer


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),  # AC-04
        ({"code_challenge_method": "plain"}, "invalid_request"),  # AC-05
        ({"code_challenge_method": None}, "invalid_request"),  # RFC 7636 default is plain
        ({"code_challenge": "short"}, "invalid_request"),
        ({"aud": "https://evil.example/fhir"}, "invalid_request"),  # AC-19
        ({"aud": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),  # AC-18
        ({"response_type": "code token"}, "unsupported_response_type"),
        ({"response_type": None}, "unsupported_response_type"),
        ({"scope": "system/*.rs email"}, "invalid_scope"),  # nothing grantable
        ({"launch": "not-a-launch", "scope": "launch openid"}, "invalid_request"),
        ({"prompt": "select_account"}, "invalid_request"),
        ({"state": "s" * 2049}, "invalid_request"),
    ],
)
def test_invalid_request_redirects_with_state_and_iss(
    auth_server: AuthServer, browser: Browser, app: App, overrides: dict, error: str
) -> None:
    request = authorization_request(auth_server, app, **overrides)
    answer = error_redirect(browser, request.params)
    assert answer["error"] == error, answer
    assert answer["iss"] == auth_server.settings.issuer_url  # RFC 9207 on errors too (AC-17)
    if len(request.params.get("state", "")) <= 2048:
        assert answer["state"] == request.state
    else:
        assert "state" not in answer
    assert "\n" not in answer.get("error_description", "")


def test_aud_with_a_trailing_slash_is_the_same_base(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    user = add_user(auth_server)
    request = authorization_request(auth_server, app, aud=auth_server.fhir_base + "/")
    assert "code" in approve(browser, auth_server, app, user, request)


def test_state_comes_back_byte_identical(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    """AC-16: special characters are encoded, never injected as parameters."""
    user = add_user(auth_server)
    request = authorization_request(auth_server, app, state="a&code=evil#x é+/=")
    answer = approve(browser, auth_server, app, user, request)
    assert answer["state"] == "a&code=evil#x é+/="


def test_loopback_redirect_may_use_any_port(auth_server: AuthServer, browser: Browser) -> None:
    """RFC 8252 section 7.3, for native apps; the host must still match exactly."""
    app = register_app(auth_server, redirect_uris=("http://127.0.0.1/callback",))
    user = add_user(auth_server)
    uri = "http://127.0.0.1:53127/callback"
    request = authorization_request(auth_server, app, redirect_uri=uri)
    answer = approve(browser, auth_server, app, user, request)
    r = exchange(browser.http, auth_server, app, answer["code"], request.verifier, redirect_uri=uri)
    assert r.status_code == 200, r.text
    for other in ("http://localhost:53127/callback", "http://127.0.0.1:53127/other"):
        bad = authorization_request(auth_server, app, redirect_uri=other)
        assert_error_page(browser.http.get("/auth/authorize", params=bad.params))


def test_code_redirect_keeps_the_registered_query(
    auth_server: AuthServer, browser: Browser
) -> None:
    uri = "https://app.example.com/cb?tenant=1"
    app = register_app(auth_server, redirect_uris=(uri,))
    user = add_user(auth_server)
    request = authorization_request(auth_server, app, redirect_uri=uri)
    page = start(browser, request)
    r = browser.submit(log_in(browser, page, user), button=("decision", "approve"))
    location = r.headers["location"]
    assert location.startswith(uri + "&code=")
    code = redirect_params(r)["code"]
    token = exchange(browser.http, auth_server, app, code, request.verifier, redirect_uri=uri)
    assert token.status_code == 200, token.text


def test_prompt_none_without_a_session_is_login_required(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    request = authorization_request(auth_server, app, prompt="none")
    answer = error_redirect(browser, request.params)
    assert answer["error"] == "login_required" and answer["state"] == request.state


def test_prompt_none_with_a_session_is_consent_required(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    user = add_user(auth_server)
    approve(browser, auth_server, app, user, authorization_request(auth_server, app))
    request = authorization_request(auth_server, app, prompt="none")
    assert error_redirect(browser, request.params)["error"] == "consent_required"


def test_pages_carry_anti_framing_and_no_store_headers(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    user = add_user(auth_server)
    request = authorization_request(auth_server, app)
    redirect = browser.http.get("/auth/authorize", params=request.params)
    assert redirect.status_code == 303
    assert_page_headers(redirect)
    login = browser.follow(redirect)
    assert_page_headers(login)
    assert "form-action 'self';" in login.headers["content-security-policy"]
    consent = browser.submit(login, {"username": user.username, "password": user.password})
    assert_page_headers(consent)
    # The approval form's redirect goes to the app: its origin, and only it, is allowed.
    csp = consent.headers["content-security-policy"]
    assert "form-action 'self' https://app.example.com;" in csp
    css = browser.http.get("/auth/static/auth.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_pages_are_accessible_forms(auth_server: AuthServer, browser: Browser, app: App) -> None:
    page = start(browser, authorization_request(auth_server, app))
    html = page.text
    assert '<html lang="en">' in html
    for field in ("username", "password", "totp"):
        assert f'<label for="{field}">' in html and f'id="{field}"' in html
    assert "<script" not in html


async def test_plain_http_public_url_off_loopback_refuses_authorize(
    database: EmbeddedDatabase,
) -> None:
    settings = auth_settings(database, 8080, base_url="http://phr.example.com")
    services = AuthServices.create(settings)
    transport = httpx.ASGITransport(app=auth_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_base) as http:
            r = await http.get("/auth/authorize", params={"client_id": "x"})
            assert_error_page(r)
            assert "https" in r.text
    finally:
        services.close()
