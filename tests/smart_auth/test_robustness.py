"""Races on single-use secrets (catalogue AC-02, IR-06) and hostile input: 4xx, never 500."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from smart_auth.directory import Party, SelfOnlyDirectory
from smart_auth.services import AuthServices
from tests.smart_auth.browser import Browser
from tests.smart_auth.conftest import AuthServer, auth_app, auth_settings
from tests.smart_auth.flows import (
    add_user,
    approve,
    authorization_request,
    exchange,
    launch,
    refresh,
    register_app,
)
from tests.smart_auth.helpers import basic
from tests.support import TLS, EmbeddedDatabase, free_port


def parallel(n: int, call) -> list[httpx.Response]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def introspect_active(auth_server: AuthServer, http: httpx.Client, token: str, rs) -> bool:
    client, secret = rs
    r = http.post(
        "/auth/introspect", data={"token": token}, headers=basic(client.client_id, secret)
    )
    return bool(r.json()["active"])


def test_concurrent_redemptions_of_one_code_leave_no_live_token(
    auth_server: AuthServer, browser: Browser, resource_server
) -> None:
    """AC-02: at most one redemption succeeds, and since the code was replayed, whatever it
    issued is revoked (a replay that lands first fails the redemption itself)."""
    app, user = register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app)
    code = approve(browser, auth_server, app, user, request)["code"]

    def redeem() -> httpx.Response:
        with httpx.Client(base_url=auth_server.url, verify=TLS, timeout=30) as http:
            return exchange(http, auth_server, app, code, request.verifier)

    answers = parallel(5, redeem)
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) <= 1
    assert all(r.json()["error"] == "invalid_grant" for r in answers if r.status_code != 200)
    for r in ok:
        body = r.json()
        assert not introspect_active(
            auth_server, browser.http, body["access_token"], resource_server
        )
        assert refresh(browser.http, auth_server, app, body["refresh_token"]).status_code == 400


def test_concurrent_refreshes_with_one_token_revoke_the_family(
    auth_server: AuthServer, http: httpx.Client, resource_server
) -> None:
    """IR-06, decided strict (no grace window): one refresh wins the token, the others are reuse,
    so the family is revoked, including what the winner got."""
    app, user = register_app(auth_server), add_user(auth_server)
    first = launch(auth_server, app, user)

    def use() -> httpx.Response:
        with httpx.Client(base_url=auth_server.url, verify=TLS, timeout=30) as client:
            return refresh(client, auth_server, app, first["refresh_token"])

    answers = parallel(4, use)
    assert sum(r.status_code == 200 for r in answers) <= 1
    for r in answers:
        if r.status_code == 200:
            body = r.json()
            assert not introspect_active(auth_server, http, body["access_token"], resource_server)
            assert refresh(http, auth_server, app, body["refresh_token"]).status_code == 400
        else:
            assert r.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/auth/authorize", {"params": {"client_id": "é" * 300}}, 400),
        ("GET", "/auth/authorize", {"params": {"client_id": "a\r\nSet-Cookie: x=1"}}, 400),
        ("POST", "/auth/authorize", {"json": {"client_id": "x"}}, 400),
        (
            "POST",
            "/auth/authorize",
            {
                "content": b"client_id=\xff\xfe",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            400,
        ),
        ("POST", "/auth/authorize", {"data": {"x": "y" * 70_000}}, 400),
        ("GET", "/auth/consent", {}, 400),
        ("GET", "/auth/consent", {"params": {"request": "r" * 5000}}, 400),
        ("GET", "/auth/login", {"params": {"request": "no-such-request"}}, 400),
        ("POST", "/auth/consent", {"data": {"request": "x", "decision": "approve"}}, 403),
        ("POST", "/auth/login", {"json": {"username": "x"}}, 400),
        ("POST", "/auth/login", {"data": {"username": "x", "password": "y"}}, 403),
        ("POST", "/auth/logout", {"data": {"csrf": "x"}}, 403),
        ("POST", "/auth/launch", {"data": {"csrf": "x"}}, 403),
        ("GET", "/auth/login", {"cookies": {"phr_session": "z" * 4000}}, 200),
        ("PUT", "/auth/authorize", {}, 405),
    ],
)
def test_hostile_input_is_a_clear_4xx(
    auth_server: AuthServer, method: str, path: str, kwargs: dict, status: int
) -> None:
    cookies = kwargs.pop("cookies", None)
    with httpx.Client(base_url=auth_server.url, verify=TLS, cookies=cookies) as http:
        r = http.request(method, path, **kwargs)
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    assert "set-cookie: x=1" not in str(r.headers).lower()


def test_huge_credentials_are_a_failed_login_not_an_error(
    auth_server: AuthServer, browser: Browser
) -> None:
    page = browser.open("/auth/login")
    r = browser.submit(page, {"username": "u" * 5000, "password": "p" * 20_000})
    assert r.status_code == 200 and "not right" in r.text


def test_repeated_token_parameters_are_invalid_request(
    auth_server: AuthServer, http: httpx.Client
) -> None:
    app = register_app(auth_server)
    body = f"grant_type=authorization_code&code=a&code=b&client_id={app.client_id}"
    r = http.post(
        "/auth/token", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_without_a_directory_a_patient_acts_for_itself_only() -> None:
    directory = SelfOnlyDirectory()
    assert await directory.patients_for("Patient/p1") == [Party("Patient", "p1")]
    assert await directory.patients_for("RelatedPerson/r1") == []
    assert await directory.describe("Patient/p1") == Party("Patient", "p1")
    assert await directory.describe("Observation/o1") is None
    assert await directory.describe("Patient/../x") is None


async def test_pages_answer_503_with_retry_after_while_the_database_is_away(
    database: EmbeddedDatabase,
) -> None:
    port = free_port()  # nothing listens there
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    settings = auth_settings(database, 8080, mongodb_uri=uri, db_timeout_ms=300)
    services = AuthServices.create(settings)
    transport = httpx.ASGITransport(app=auth_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_base) as http:
            for path in ("/auth/authorize?client_id=x", "/auth/login"):
                r = await http.get(path)
                assert r.status_code == 503 and r.headers["retry-after"] == "5", path
                assert r.headers["content-type"].startswith("text/html")
    finally:
        services.close()
