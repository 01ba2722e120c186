"""Standalone launch end to end: authorize, log in, approve, exchange the code (SMART checklist
2 and 3, catalogue AC)."""

from __future__ import annotations

import httpx
import pytest

from smart_auth.clients import AuthMethod
from tests.smart_auth.browser import Browser, forms, redirect_params
from tests.smart_auth.conftest import AuthServer
from tests.smart_auth.flows import (
    STANDALONE,
    add_user,
    approve,
    authorization_request,
    exchange,
    launch,
    log_in,
    register_app,
    start,
)
from tests.smart_auth.helpers import jwt_parts, oauth_error


def assert_smart_token_response(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 300
    assert isinstance(body["scope"], str)
    return body


@pytest.mark.parametrize(
    "method", ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
)
def test_standalone_launch_issues_smart_tokens(
    auth_server: AuthServer, browser: Browser, method: AuthMethod
) -> None:
    app = register_app(auth_server, method)
    user = add_user(auth_server)
    request = authorization_request(auth_server, app)
    answer = approve(browser, auth_server, app, user, request)
    assert set(answer) == {"code", "state", "iss"}
    assert answer["state"] == request.state
    assert answer["iss"] == auth_server.settings.issuer_url  # RFC 9207

    r = exchange(
        browser.http,
        auth_server,
        app,
        answer["code"],
        request.verifier,
    )
    body = assert_smart_token_response(r)
    assert set(body["scope"].split()) == set(STANDALONE.split())
    assert body["patient"] == "alice"
    assert body["need_patient_banner"] is True
    assert body["refresh_token"] and body["id_token"]
    style = browser.http.get(body["smart_style_url"])
    assert style.status_code == 200 and "color_background" in style.json()

    claims = jwt_parts(body["access_token"])[1]
    assert claims["aud"] == auth_server.fhir_base
    assert claims["client_id"] == app.client_id
    assert claims["sub"] == user.account.sub
    assert claims["patient"] == "alice" and claims["fhirUser"] == "Patient/alice"
    verified = auth_server.services.tokens.verify(body["access_token"], auth_server.fhir_base)
    assert verified.patient == "alice"


def test_public_token_response_is_readable_cross_origin(
    auth_server: AuthServer, browser: Browser
) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app)
    answer = approve(browser, auth_server, app, user, request)
    r = browser.http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": request.params["redirect_uri"],
            "code_verifier": request.verifier,
            "client_id": app.client_id,
        },
        headers={"Origin": "https://app.example.com"},
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


def test_authorize_post_works_like_get(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app)
    answer = approve(browser, auth_server, app, user, request, post=True)
    assert answer["state"] == request.state
    r = exchange(browser.http, auth_server, app, answer["code"], request.verifier)
    assert r.status_code == 200, r.text


def test_an_existing_session_skips_the_login(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    approve(browser, auth_server, app, user, authorization_request(auth_server, app))
    page = start(browser, authorization_request(auth_server, app))
    assert forms(page.text)[0].action == "/auth/consent"


def test_deny_redirects_access_denied_with_state(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app)
    answer = approve(browser, auth_server, app, user, request, decision="deny")
    assert answer["error"] == "access_denied"
    assert answer["state"] == request.state and answer["iss"] == auth_server.settings.issuer_url
    assert "code" not in answer


def test_unticked_scope_is_not_granted(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    scope = "launch/patient openid fhirUser patient/Observation.rs patient/Patient.rs"
    request = authorization_request(auth_server, app, scope)
    answer = approve(browser, auth_server, app, user, request, untick=("patient/Observation.rs",))
    body = exchange(browser.http, auth_server, app, answer["code"], request.verifier).json()
    assert body["scope"].split() == ["launch/patient", "openid", "fhirUser", "patient/Patient.rs"]
    assert "refresh_token" not in body  # neither offline_access nor online_access asked


def test_unticking_every_resource_scope_is_allowed(
    auth_server: AuthServer, browser: Browser
) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app, "openid fhirUser patient/*.rs")
    answer = approve(browser, auth_server, app, user, request, untick=("patient/*.rs",))
    body = exchange(browser.http, auth_server, app, answer["code"], request.verifier).json()
    assert body["scope"] == "openid fhirUser"


def test_tampered_scope_field_cannot_widen_the_grant(
    auth_server: AuthServer, browser: Browser
) -> None:
    """Catalogue SL-05: granted = requested ∩ ticked; an added checkbox value is ignored."""
    app, user = register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app, "launch/patient patient/Patient.rs")
    page = log_in(browser, start(browser, request), user)
    answer = redirect_params(
        browser.submit(
            page,
            scopes=["patient/Patient.rs", "patient/*.cruds", "user/*.cruds"],
            button=("decision", "approve"),
        )
    )
    body = exchange(browser.http, auth_server, app, answer["code"], request.verifier).json()
    assert body["scope"] == "launch/patient patient/Patient.rs"


def test_scope_beyond_the_registration_is_dropped(auth_server: AuthServer) -> None:
    app = register_app(auth_server, scope="launch/patient openid fhirUser patient/Patient.rs")
    user = add_user(auth_server)
    body = launch(
        auth_server,
        app,
        user,
        "launch/patient openid fhirUser patient/*.rs "
        "patient/Patient.rs user/*.cruds offline_access",
    )
    assert body["scope"] == "launch/patient openid fhirUser patient/Patient.rs"
    assert "refresh_token" not in body


def test_guardian_picks_one_of_several_patients(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server, "RelatedPerson/guardian")
    request = authorization_request(auth_server, app)
    page = log_in(browser, start(browser, request), user)
    (form,) = forms(page.text)
    assert form.radios["patient"] == ["charlie", "dana"]
    assert "Charlie Example" in page.text and "Dana Example" in page.text
    answer = approve(browser, auth_server, app, user, request, patient="dana")
    body = exchange(browser.http, auth_server, app, answer["code"], request.verifier).json()
    assert body["patient"] == "dana"
    assert jwt_parts(body["access_token"])[1]["fhirUser"] == "RelatedPerson/guardian"


def test_a_patient_outside_the_choices_is_refused(
    auth_server: AuthServer, browser: Browser
) -> None:
    app, user = register_app(auth_server), add_user(auth_server, "RelatedPerson/guardian")
    request = authorization_request(auth_server, app)
    page = log_in(browser, start(browser, request), user)
    r = browser.submit(page, {"patient": "alice"}, button=("decision", "approve"))
    assert r.status_code == 400 and "Choose a patient" in r.text
    # Nothing was decided: the request still waits for a valid answer.
    answer = approve(browser, auth_server, app, user, request, patient="charlie")
    assert "code" in answer


def test_no_patient_to_pick_is_access_denied(auth_server: AuthServer, browser: Browser) -> None:
    app, user = register_app(auth_server), add_user(auth_server, "RelatedPerson/stranger")
    request = authorization_request(auth_server, app)
    page = log_in(browser, start(browser, request), user)
    answer = redirect_params(page)
    assert answer["error"] == "access_denied" and answer["state"] == request.state


def test_an_answered_request_cannot_be_answered_again(
    auth_server: AuthServer, browser: Browser
) -> None:
    app, user = register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app)
    page = log_in(browser, start(browser, request), user)
    first = browser.submit(page, button=("decision", "approve"))
    assert "code" in redirect_params(first)
    again = browser.submit(page, button=("decision", "approve"))
    assert again.status_code == 400 and "location" not in again.headers


def test_code_is_bound_to_its_client(auth_server: AuthServer, browser: Browser) -> None:
    """Catalogue AC-03: another client's code is invalid_grant and is not consumed by it."""
    app, other, user = register_app(auth_server), register_app(auth_server), add_user(auth_server)
    request = authorization_request(auth_server, app)
    answer = approve(browser, auth_server, app, user, request)
    r = exchange(browser.http, auth_server, other, answer["code"], request.verifier)
    oauth_error(r, 400, "invalid_grant")
    assert exchange(browser.http, auth_server, app, answer["code"], request.verifier).is_success


def test_smart_v1_scopes_are_accepted(auth_server: AuthServer) -> None:
    """Checklist 9.2: `patient/*.read` (v1) within a `patient/*.cruds` registration."""
    app, user = register_app(auth_server), add_user(auth_server)
    body = launch(auth_server, app, user, "launch/patient openid fhirUser patient/*.read")
    assert body["scope"] == "launch/patient openid fhirUser patient/*.read"
    verified = auth_server.services.tokens.verify(body["access_token"], auth_server.fhir_base)
    assert {s.text for s in verified.scopes.resources} == {"patient/*.read"}
