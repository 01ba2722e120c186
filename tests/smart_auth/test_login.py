"""Login, sessions, CSRF, throttling and TOTP (catalogue SL)."""

from __future__ import annotations

import time

import httpx
import pyotp
import pytest

from smart_auth.services import AuthServices
from smart_auth.sessions import SessionStore
from smart_auth.store import AuthStore
from tests.smart_auth.browser import Browser, forms, redirect_params
from tests.smart_auth.conftest import AuthServer, auth_app, auth_settings
from tests.smart_auth.flows import (
    add_user,
    approve,
    authorization_request,
    is_login,
    log_in,
    register_app,
    start,
)
from tests.support import EmbeddedDatabase, free_port, serving


def session_cookie(r: httpx.Response) -> str:
    (cookie,) = [c for c in r.headers.get_list("set-cookie") if "phr_session=" in c]
    return cookie


def test_session_cookie_flags_and_rotation_on_login(
    auth_server: AuthServer, browser: Browser
) -> None:
    """SL-08: HttpOnly, SameSite=Lax, Path=/; a new identifier after login (no fixation)."""
    app, user = register_app(auth_server), add_user(auth_server)
    redirect = browser.http.get(
        "/auth/authorize", params=authorization_request(auth_server, app).params
    )
    login = browser.follow(redirect)
    anonymous = session_cookie(login)
    flags = {part.strip() for part in anonymous.split(";")[1:]}
    assert flags == {"Path=/", "HttpOnly", "SameSite=Lax"}  # plain http: no Secure, no __Host-
    assert anonymous.startswith("phr_session=")
    before = browser.http.cookies["phr_session"]

    r = browser.submit(login, {"username": user.username, "password": user.password}, follow=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/consent?request=")
    after = session_cookie(r).split(";")[0].split("=", 1)[1]
    assert after != before
    # The pre-login identifier is worthless now.
    stale = httpx.Client(base_url=auth_server.url, cookies={"phr_session": before})
    with stale:
        assert is_login(stale.get("/auth/login"))


async def test_https_cookie_is_host_prefixed_and_secure(database: EmbeddedDatabase) -> None:
    settings = auth_settings(database, 8080, base_url="https://phr.example.com")
    services = AuthServices.create(settings)
    transport = httpx.ASGITransport(app=auth_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_base) as http:
            r = await http.get("/auth/login")
            cookie = r.headers["set-cookie"]
            assert cookie.startswith("__Host-phr_session=")
            flags = {part.strip() for part in cookie.split(";")[1:]}
            assert flags == {"Path=/", "HttpOnly", "SameSite=Lax", "Secure"}
    finally:
        services.close()


def test_wrong_password_and_unknown_user_look_alike(
    auth_server: AuthServer, browser: Browser
) -> None:
    """SL-02: same status and body; the only difference is the username echoed back."""
    user = add_user(auth_server)
    page = browser.open("/auth/login")
    wrong = browser.submit(page, {"username": user.username, "password": "wrong-password"})
    page = browser.open("/auth/login")
    unknown = browser.submit(
        page, {"username": "nobody-" + user.username, "password": "pw12345678"}
    )
    assert wrong.status_code == unknown.status_code == 200
    assert is_login(wrong) and is_login(unknown)
    assert wrong.text.replace(user.username, "X") == unknown.text.replace(
        "nobody-" + user.username, "X"
    ).replace(forms(unknown.text)[0].value("csrf") or "", forms(wrong.text)[0].value("csrf") or "")
    assert "not right" in wrong.text


def test_account_locks_after_repeated_failures_without_saying_so(
    auth_server: AuthServer, browser: Browser
) -> None:
    """SL-01: after `login_max_failures` failures even the right password is refused, with the
    same answer as a wrong one."""
    user = add_user(auth_server)
    for _ in range(auth_server.settings.login_max_failures):
        page = browser.open("/auth/login")
        browser.submit(page, {"username": user.username, "password": "wrong-password"})
    page = browser.open("/auth/login")
    locked = browser.submit(page, {"username": user.username, "password": user.password})
    assert locked.status_code == 200 and is_login(locked) and "not right" in locked.text
    # Another account is unaffected.
    other = add_user(auth_server)
    ok = browser.submit(
        browser.open("/auth/login"), {"username": other.username, "password": other.password}
    )
    assert "Signed in" in ok.text


def test_ip_throttle_answers_429_with_retry_after(database: EmbeddedDatabase) -> None:
    """SL-03: many failures from one address (any usernames) -> 429, counted in MongoDB."""
    port = free_port()
    settings = auth_settings(database, port, login_max_failures_per_ip=3)
    services = AuthServices.create(settings)
    with serving(auth_app(services), port):
        browser = Browser(f"http://127.0.0.1:{port}")
        try:
            for i in range(3):
                page = browser.open("/auth/login")
                r = browser.submit(page, {"username": f"user{i}", "password": "wrong-password"})
                assert r.status_code == 200
            r = browser.submit(
                browser.open("/auth/login"), {"username": "x", "password": "yyyyyyyy"}
            )
            assert r.status_code == 429
            assert 0 < int(r.headers["retry-after"]) <= settings.login_failure_window + 1
            assert "Too many" in r.text
        finally:
            browser.close()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"drop": ("csrf",)}, "missing"),
        ({"values": {"csrf": "forged"}}, "wrong"),
        ({"headers": {"Origin": "https://evil.example"}}, "cross-site"),
    ],
)
def test_consent_form_without_a_valid_csrf_token_is_403_and_changes_nothing(
    auth_server: AuthServer, browser: Browser, change: dict, why: str
) -> None:
    """SL-04: no code issued, the request still waiting, nothing decided."""
    app, user = register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app)
    consent = log_in(browser, start(browser, request), user)
    codes_before = auth_server.services.store.codes.count_documents({"client_id": app.client_id})
    r = browser.submit(consent, button=("decision", "approve"), **change)
    assert r.status_code == 403, why
    assert "location" not in r.headers
    assert auth_server.services.store.codes.count_documents({"client_id": app.client_id}) == (
        codes_before
    )
    answer = approve(browser, auth_server, app, user, request)  # still answerable
    assert "code" in answer


def test_another_sessions_csrf_token_is_refused(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    consent = log_in(browser, start(browser, authorization_request(auth_server, app)), user)
    other = Browser(auth_server.url)
    try:
        theirs = log_in(other, start(other, authorization_request(auth_server, app)), user)
        token = forms(theirs.text)[0].value("csrf")
        r = browser.submit(consent, {"csrf": token or ""}, button=("decision", "approve"))
        assert r.status_code == 403
    finally:
        other.close()


def test_login_form_without_csrf_is_403(auth_server: AuthServer, browser: Browser) -> None:
    user = add_user(auth_server)
    page = browser.open("/auth/login")
    r = browser.submit(page, {"username": user.username, "password": user.password}, drop=("csrf",))
    assert r.status_code == 403
    assert is_login(browser.open("/auth/login"))  # still signed out


def test_totp_is_required_when_set_up_and_single_use(
    auth_server: AuthServer, browser: Browser
) -> None:
    user = add_user(auth_server, totp=True)
    assert user.account.totp_secret
    totp = pyotp.TOTP(user.account.totp_secret)
    page = browser.open("/auth/login")
    without = browser.submit(page, {"username": user.username, "password": user.password})
    assert is_login(without) and "not right" in without.text
    bad_code = "000000" if totp.now() != "000000" else "111111"
    credentials = {"username": user.username, "password": user.password}
    wrong = browser.submit(without, {**credentials, "totp": bad_code})
    assert is_login(wrong)
    code = totp.now()
    ok = browser.submit(wrong, {"username": user.username, "password": user.password, "totp": code})
    assert "Signed in" in ok.text
    # The same code a second time (a shoulder-surfer's replay) is refused.
    replay = Browser(auth_server.url)
    try:
        page = replay.open("/auth/login")
        r = replay.submit(
            page, {"username": user.username, "password": user.password, "totp": code}
        )
        assert is_login(r) and "not right" in r.text
    finally:
        replay.close()


def test_totp_secrets_are_stored_sealed(auth_server: AuthServer) -> None:
    user = add_user(auth_server, totp=True)
    secret = user.account.totp_secret
    assert secret
    accounts = auth_server.services.accounts

    def opened(username: str) -> str | None:
        account = accounts.get(username)
        return account.totp_secret if account else None

    doc = accounts.store.accounts.find_one({"_id": user.username})
    assert doc is not None and "totp_secret" not in doc and secret not in str(doc)
    assert opened(user.username) == secret
    # As an earlier version stored it: readable, and sealed at the next start.
    accounts.store.accounts.update_one(
        {"_id": user.username}, {"$set": {"totp_secret": secret}, "$unset": {"totp_sealed": ""}}
    )
    assert opened(user.username) == secret
    assert accounts.seal_stored() == 1
    doc = accounts.store.accounts.find_one({"_id": user.username})
    assert doc is not None and "totp_secret" not in doc and secret not in str(doc)
    assert opened(user.username) == secret


def test_logout_ends_the_session(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    approve(browser, auth_server, app, user, authorization_request(auth_server, app))
    page = browser.open("/auth/logout")
    assert "Sign out" in page.text
    out = browser.submit(page)
    assert out.status_code == 200 and "signed out" in out.text
    assert "Max-Age=0" in session_cookie(out)
    request = authorization_request(auth_server, app, prompt="none")
    answer = redirect_params(browser.http.get("/auth/authorize", params=request.params))
    assert answer["error"] == "login_required"
    assert is_login(start(browser, authorization_request(auth_server, app)))


def test_logout_needs_the_csrf_token(auth_server: AuthServer, browser: Browser) -> None:
    user = add_user(auth_server)
    browser.submit(
        browser.open("/auth/login"), {"username": user.username, "password": user.password}
    )
    r = browser.http.post("/auth/logout", data={"csrf": ""})
    assert r.status_code == 403
    assert "Signed in" in browser.open("/auth/login").text


def test_session_idle_timeout_and_absolute_lifetime(auth_server: AuthServer) -> None:
    services = auth_server.services
    user = add_user(auth_server)

    def store_at(offset: float) -> SessionStore:
        store = AuthStore(
            services.store.client,
            services.settings.db_name,
            services.store.sealer,
            lambda: time.time() + offset,
        )
        return SessionStore(store, idle_timeout=900, lifetime=3600, secure=False)

    value, _ = store_at(0).create(user.account)
    assert store_at(800).get(value) is not None  # used: the idle timer restarts
    assert store_at(1600).get(value) is not None  # 800 s after the last use
    assert store_at(1600 + 901).get(value) is None  # idle too long
    value, _ = store_at(0).create(user.account)
    for offset in range(600, 3600, 600):
        assert store_at(offset).get(value) is not None
    assert store_at(3601).get(value) is None  # absolute lifetime, however active


def test_prompt_login_forces_a_fresh_login(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    approve(browser, auth_server, app, user, authorization_request(auth_server, app))
    request = authorization_request(auth_server, app, prompt="login")
    page = start(browser, request)
    assert is_login(page)  # although signed in
    consent = log_in(browser, page, user)
    assert forms(consent.text)[0].action == "/auth/consent"
    assert "code" in approve(browser, auth_server, app, user, request)
