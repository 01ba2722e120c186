"""Refresh tokens: rotation, reuse detection, narrowing, binding, revocation (SMART checklist 5,
catalogue IR)."""

from __future__ import annotations

import time

import httpx
import pytest

from smart_auth.refresh import GrantRevoked
from smart_auth.store import digest, utc
from tests.smart_auth.browser import Browser, forms
from tests.smart_auth.conftest import AuthServer
from tests.smart_auth.flows import (
    STANDALONE,
    App,
    User,
    add_user,
    approve,
    authorization_request,
    exchange,
    launch,
    refresh,
    register_app,
)
from tests.smart_auth.helpers import basic, oauth_error


@pytest.fixture
def app(auth_server: AuthServer) -> App:
    return register_app(auth_server)


@pytest.fixture
def user(auth_server: AuthServer) -> User:
    return add_user(auth_server)


def assert_refreshed(r: httpx.Response) -> dict:
    """Checklist 5.2-5.4."""
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int)
    assert body["access_token"] and body["refresh_token"]
    return body


def active(http: httpx.Client, token: str, resource_server) -> bool:
    client, secret = resource_server
    r = http.post(
        "/auth/introspect", data={"token": token}, headers=basic(client.client_id, secret)
    )
    return bool(r.json()["active"])


def test_refresh_without_scope_keeps_the_grant_and_rotates(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User
) -> None:
    first = launch(auth_server, app, user)
    body = assert_refreshed(refresh(http, auth_server, app, first["refresh_token"]))
    assert body["scope"] == first["scope"]
    assert body["patient"] == "alice" and "need_patient_banner" in body
    assert body["refresh_token"] != first["refresh_token"]
    verified = auth_server.services.tokens.verify(body["access_token"], auth_server.fhir_base)
    assert verified.patient == "alice" and verified.sub == user.account.sub


def test_refresh_with_the_same_scope_string(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User
) -> None:
    first = launch(auth_server, app, user)
    body = assert_refreshed(refresh(http, auth_server, app, first["refresh_token"], first["scope"]))
    assert body["scope"] == first["scope"]


@pytest.mark.parametrize(
    "narrower",
    [
        "offline_access patient/*.rs",
        "offline_access patient/Observation.rs",  # within patient/*.rs
        "offline_access patient/*.r",
    ],
)
def test_refresh_may_narrow(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User, narrower: str
) -> None:
    first = launch(auth_server, app, user)
    body = assert_refreshed(refresh(http, auth_server, app, first["refresh_token"], narrower))
    assert body["scope"] == narrower


@pytest.mark.parametrize(
    "wider", ["patient/*.cruds", "user/*.rs", "offline_access patient/*.rs profile", "bogus"]
)
def test_refresh_may_not_widen_and_the_token_survives(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User, wider: str
) -> None:
    first = launch(auth_server, app, user)
    oauth_error(
        refresh(http, auth_server, app, first["refresh_token"], wider), 400, "invalid_scope"
    )
    assert_refreshed(refresh(http, auth_server, app, first["refresh_token"]))


def test_dropping_offline_access_ends_the_refresh_chain(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User
) -> None:
    first = launch(auth_server, app, user)
    r = refresh(http, auth_server, app, first["refresh_token"], "patient/*.rs")
    assert r.status_code == 200 and "refresh_token" not in r.json()


def test_reuse_of_a_rotated_token_revokes_the_family(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User, resource_server
) -> None:
    """IR-05: RT1 -> RT2; RT1 again -> invalid_grant, and RT2 and its access token die."""
    first = launch(auth_server, app, user)
    second = assert_refreshed(refresh(http, auth_server, app, first["refresh_token"]))
    oauth_error(refresh(http, auth_server, app, first["refresh_token"]), 400, "invalid_grant")
    oauth_error(refresh(http, auth_server, app, second["refresh_token"]), 400, "invalid_grant")
    assert not active(http, second["access_token"], resource_server)
    assert not active(http, first["access_token"], resource_server)
    assert not active(http, second["refresh_token"], resource_server)


def test_refresh_token_is_bound_to_its_client(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User
) -> None:
    """IR-08 / checklist 5.11: another client is refused and the owner's token is untouched."""
    first = launch(auth_server, app, user)
    other = register_app(auth_server)
    oauth_error(refresh(http, auth_server, other, first["refresh_token"]), 400, "invalid_grant")
    assert_refreshed(refresh(http, auth_server, app, first["refresh_token"]))


@pytest.mark.parametrize("token", ["garbage", "x" * 300])
def test_garbage_refresh_token_is_invalid_grant(
    auth_server: AuthServer, http: httpx.Client, app: App, token: str
) -> None:
    oauth_error(refresh(http, auth_server, app, token), 400, "invalid_grant")


def test_expired_refresh_token_is_invalid_grant(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User
) -> None:
    first = launch(auth_server, app, user)
    auth_server.services.store.tokens.update_one(
        {"_id": digest(first["refresh_token"])}, {"$set": {"expires_at": utc(0)}}
    )
    oauth_error(refresh(http, auth_server, app, first["refresh_token"]), 400, "invalid_grant")


def test_confidential_refresh_needs_the_client_secret(
    auth_server: AuthServer, http: httpx.Client, user: User
) -> None:
    app = register_app(auth_server, "client_secret_basic")
    first = launch(auth_server, app, user)
    assert_refreshed(refresh(http, auth_server, app, first["refresh_token"]))
    data = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": app.client_id,
    }
    r = http.post("/auth/token", data=data)
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


def test_revoking_a_refresh_token_revokes_its_family(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User, resource_server
) -> None:
    """RFC 7009 section 2.1 and IR-09: the grant's access tokens die with it."""
    first = launch(auth_server, app, user)
    second = assert_refreshed(refresh(http, auth_server, app, first["refresh_token"]))
    r = http.post(
        "/auth/revoke", data={"token": second["refresh_token"], "client_id": app.client_id}
    )
    assert r.status_code == 200
    oauth_error(refresh(http, auth_server, app, second["refresh_token"]), 400, "invalid_grant")
    assert not active(http, second["access_token"], resource_server)
    assert not active(http, first["access_token"], resource_server)


def test_another_client_cannot_revoke_a_refresh_token(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User
) -> None:
    first = launch(auth_server, app, user)
    other = register_app(auth_server)
    r = http.post(
        "/auth/revoke", data={"token": first["refresh_token"], "client_id": other.client_id}
    )
    assert r.status_code == 400
    assert_refreshed(refresh(http, auth_server, app, first["refresh_token"]))


def test_refresh_stops_when_the_account_is_gone(
    auth_server: AuthServer, http: httpx.Client, app: App, user: User
) -> None:
    """Within a second, though the server remembers the account it read (cache.py)."""
    first = launch(auth_server, app, user)
    second = assert_refreshed(refresh(http, auth_server, app, first["refresh_token"]))
    auth_server.services.store.accounts.delete_one({"_id": user.username})
    time.sleep(1.05)
    oauth_error(refresh(http, auth_server, app, second["refresh_token"]), 400, "invalid_grant")


def test_an_issuance_racing_a_revocation_revokes_itself(
    auth_server: AuthServer, app: App, user: User
) -> None:
    """The revocation lands between the issuance's record and its commit: the commit finds the
    presented token killed, so the new tokens are revoked too (refresh.py)."""
    services = auth_server.services
    grants, tokens = services.grants, services.tokens
    presented = grants.find(launch(auth_server, app, user)["refresh_token"])
    assert presented is not None
    context = presented.context
    _access, claims = tokens.mint(
        audience=services.fhir_base,
        client_id=context.client_id,
        subject=context.sub,
        scope=presented.scope,
        patient=context.patient,
        fhir_user=context.fhir_user,
    )

    def commit() -> bool:
        grants.revoke_family(context.family)  # another request revokes the grant meanwhile
        return grants.spend(presented)

    with pytest.raises(GrantRevoked):
        grants.issue(
            context,
            scope=presented.scope,
            access=claims,
            refresh_until=time.time() + 60,
            commit=commit,
        )
    assert services.denylist.contains(claims.jti), "the racing issuance's access token is denied"
    issued = services.store.tokens.find_one({"access_jti": claims.jti})
    assert issued is not None and issued["revoked"] is True


def test_online_access_lives_as_long_as_the_session(
    auth_server: AuthServer, app: App, user: User
) -> None:
    browser = Browser(auth_server.url)
    try:
        scope = "launch/patient online_access patient/*.rs"
        request = authorization_request(auth_server, app, scope)
        answer = approve(browser, auth_server, app, user, request)
        first = exchange(browser.http, auth_server, app, answer["code"], request.verifier).json()
        assert first["scope"] == scope and first["refresh_token"]
        second = assert_refreshed(refresh(browser.http, auth_server, app, first["refresh_token"]))
        browser.submit(browser.open("/auth/logout"))  # the user signs out
        r = refresh(browser.http, auth_server, app, second["refresh_token"])
        oauth_error(r, 400, "invalid_grant")
        assert forms(browser.open("/auth/login").text)[0].action == "/auth/login"
    finally:
        browser.close()


def test_no_refresh_token_without_offline_or_online_access(
    auth_server: AuthServer, app: App, user: User
) -> None:
    body = launch(auth_server, app, user, STANDALONE.replace("offline_access ", ""))
    assert "refresh_token" not in body


def test_no_refresh_token_for_a_client_without_the_refresh_grant(
    auth_server: AuthServer, user: User
) -> None:
    app = register_app(auth_server, grant_types=["authorization_code"])
    body = launch(auth_server, app, user)
    assert "offline_access" in body["scope"] and "refresh_token" not in body
