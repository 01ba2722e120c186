"""Introspection (RFC 7662, SMART checklist 6, catalogue IR) and revocation (RFC 7009)."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from smart_auth.clients import Client
from smart_auth.store import utc
from tests.smart_auth.conftest import AuthServer, BackendClient, issue, shifted
from tests.smart_auth.helpers import (
    ASSERTION_TYPE,
    assertion,
    basic,
    jwt_parts,
    oauth_error,
)


def introspect(http: httpx.Client, token: str, credentials: tuple[Client, str]) -> dict:
    client, secret = credentials
    r = http.post(
        "/auth/introspect", data={"token": token}, headers=basic(client.client_id, secret)
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def test_active_token_is_described(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, resource_server
) -> None:
    token = issue(http, auth_server, backend)
    claims = jwt_parts(token)[1]
    body = introspect(http, token, resource_server)
    assert body == {
        "active": True,
        "token_type": "Bearer",
        "scope": "system/Patient.rs",
        "client_id": backend.client_id,
        "sub": backend.client_id,
        "iss": auth_server.settings.issuer_url,
        "aud": auth_server.fhir_base,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
    }


def test_patient_and_fhir_user_are_reported(
    http: httpx.Client, auth_server: AuthServer, resource_server
) -> None:
    token, _ = auth_server.services.tokens.mint(
        audience=auth_server.fhir_base,
        client_id="patient-app",
        subject="u1",
        scope="launch/patient patient/*.rs",
        patient="p-1",
        fhir_user="Patient/p-1",
    )
    body = introspect(http, token, resource_server)
    assert body["active"] is True
    assert body["patient"] == "p-1" and body["fhirUser"] == "Patient/p-1"


def test_a_client_introspects_its_own_token_with_private_key_jwt(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient
) -> None:
    token = issue(http, auth_server, backend)
    signed = assertion(backend.rs384, backend.client_id, auth_server.token_url)
    form = {"token": token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
    r = http.post("/auth/introspect", data=form)
    assert r.status_code == 200 and r.json()["active"] is True, r.text


def _expired(s: AuthServer, b: BackendClient) -> str:
    past = shifted(s, -1000)
    return past.mint(audience=s.fhir_base, client_id=b.client_id, subject="x", scope="")[0]


def _foreign(s: AuthServer, b: BackendClient) -> str:
    key = ECKey.generate_key("P-256", auto_kid=True)
    claims = {"iss": "https://other.example", "aud": s.fhir_base, "sub": "x", "client_id": "x"}
    claims |= {"scope": "", "jti": "j", "iat": int(time.time()), "exp": int(time.time()) + 60}
    return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, claims, key, ["ES256"])


INACTIVE = {
    "garbage": lambda s, b: "invalid_token_value",
    "expired": _expired,
    "another server's token": _foreign,
    "a client assertion": lambda s, b: assertion(b.es384, b.client_id, s.token_url),
}


@pytest.mark.parametrize("case", INACTIVE)
def test_anything_not_active_is_only_active_false(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, resource_server, case
) -> None:
    token = INACTIVE[case](auth_server, backend)
    assert introspect(http, token, resource_server) == {"active": False}


def test_another_clients_token_is_inactive_to_a_non_resource_server(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, secret_client
) -> None:
    token = issue(http, auth_server, backend)
    assert introspect(http, token, secret_client) == {"active": False}  # RFC 7662 section 4


def test_introspection_needs_client_authentication(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient
) -> None:
    token = issue(http, auth_server, backend)
    r = http.post("/auth/introspect", data={"token": token})
    oauth_error(r, 401, "invalid_client")
    public, _ = auth_server.services.clients.register(
        name="public", token_endpoint_auth_method="none", scope="patient/*.rs"
    )
    r = http.post("/auth/introspect", data={"token": token, "client_id": public.client_id})
    oauth_error(r, 401, "invalid_client")


@pytest.mark.parametrize("path", ["/auth/introspect", "/auth/revoke"])
def test_missing_token_parameter_is_invalid_request(
    http: httpx.Client, resource_server, path: str
) -> None:
    client, secret = resource_server
    r = http.post(
        path, data={"token_type_hint": "access_token"}, headers=basic(client.client_id, secret)
    )
    oauth_error(r, 400, "invalid_request")


def test_unknown_token_type_hint_is_ignored(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, resource_server
) -> None:
    token = issue(http, auth_server, backend)
    client, secret = resource_server
    form = {"token": token, "token_type_hint": "weird"}
    r = http.post("/auth/introspect", data=form, headers=basic(client.client_id, secret))
    assert r.status_code == 200 and r.json()["active"] is True


# -- revocation ----------------------------------------------------------------------------------


def revoke_form(backend: BackendClient, server: AuthServer, token: str) -> dict[str, str]:
    signed = assertion(backend.es384, backend.client_id, server.token_url)
    return {"token": token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}


def test_revocation_is_idempotent_and_kills_the_token(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, resource_server
) -> None:
    token = issue(http, auth_server, backend)
    for _ in range(2):  # RFC 7009 section 2.2: 200 again for an already revoked token
        r = http.post("/auth/revoke", data=revoke_form(backend, auth_server, token))
        assert r.status_code == 200 and r.json() == {}, r.text
        assert r.headers["cache-control"] == "no-store"
    assert introspect(http, token, resource_server) == {"active": False}
    jti = jwt_parts(token)[1]["jti"]
    record = auth_server.services.store.revoked.find_one({"_id": jti})
    assert record is not None and record["exp"].timestamp() == jwt_parts(token)[1]["exp"]


def test_a_revocation_by_another_worker_shows_within_the_staleness_bound(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, resource_server
) -> None:
    """Introspection answers from the same per-process denylist the FHIR API enforces
    (revocation.py): a jti another process denied is inactive here within the bound."""
    token = issue(http, auth_server, backend)
    assert introspect(http, token, resource_server)["active"] is True
    claims = jwt_parts(token)[1]
    store = auth_server.services.store
    store.revoked.insert_one({"_id": claims["jti"], "exp": utc(claims["exp"]), "at": store.now()})
    time.sleep(auth_server.settings.revocation_staleness_seconds + 0.05)
    assert introspect(http, token, resource_server) == {"active": False}


@pytest.mark.parametrize("token", ["unknown", "a.b.c", "x" * 5000])
def test_revoking_an_unknown_token_is_200(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, token: str
) -> None:
    r = http.post("/auth/revoke", data=revoke_form(backend, auth_server, token))
    assert r.status_code == 200, r.text


def test_revoking_an_expired_token_is_200_and_stores_nothing(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient
) -> None:
    token = _expired(auth_server, backend)
    r = http.post("/auth/revoke", data=revoke_form(backend, auth_server, token))
    assert r.status_code == 200
    assert auth_server.services.store.revoked.find_one({"_id": jwt_parts(token)[1]["jti"]}) is None


def test_revocation_needs_the_confidential_client_to_authenticate(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, resource_server
) -> None:
    token = issue(http, auth_server, backend)
    r = http.post("/auth/revoke", data={"token": token, "client_id": backend.client_id})
    oauth_error(r, 401, "invalid_client")
    assert introspect(http, token, resource_server)["active"] is True


def test_a_client_cannot_revoke_another_clients_token(
    http: httpx.Client,
    auth_server: AuthServer,
    backend: BackendClient,
    secret_client,
    resource_server,
) -> None:
    token = issue(http, auth_server, backend)
    client, secret = secret_client
    r = http.post("/auth/revoke", data={"token": token}, headers=basic(client.client_id, secret))
    oauth_error(r, 400, "invalid_grant")
    assert introspect(http, token, resource_server)["active"] is True


def test_a_public_client_revokes_its_own_token_by_client_id(
    http: httpx.Client, auth_server: AuthServer, resource_server
) -> None:
    public, _ = auth_server.services.clients.register(
        name="public", token_endpoint_auth_method="none", scope="patient/*.rs"
    )
    token, _ = auth_server.services.tokens.mint(
        audience=auth_server.fhir_base,
        client_id=public.client_id,
        subject="u",
        scope="patient/*.rs",
    )
    r = http.post("/auth/revoke", data={"token": token, "client_id": public.client_id})
    assert r.status_code == 200, r.text
    assert introspect(http, token, resource_server) == {"active": False}


def test_token_endpoint_assertions_are_accepted_only_for_the_token_url_audience(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient
) -> None:
    """One `aud` for every endpoint: the token endpoint URL (catalogue TE-04)."""
    token = issue(http, auth_server, backend)
    signed = assertion(backend.es384, backend.client_id, auth_server.url + "/auth/revoke")
    form = {"token": token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
    oauth_error(http.post("/auth/revoke", data=form), (400, 401), "invalid_client")
