"""Discovery fields of this slice, CORS on the browser-facing endpoints, database outage."""

from __future__ import annotations

import httpx
import pytest

from smart_auth.router import smart_configuration
from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings
from tests.smart_auth.conftest import AuthServer, auth_app, auth_settings
from tests.smart_auth.helpers import basic, oauth_error
from tests.support import ROOT, EmbeddedDatabase, free_port


def test_smart_configuration_lists_only_what_works(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    config = smart_configuration(auth_server.settings)
    base = auth_server.url
    assert config["issuer"] == auth_server.settings.issuer_url
    assert config["authorization_endpoint"] == base + "/auth/authorize"
    assert config["token_endpoint"] == base + "/auth/token" == auth_server.token_url
    assert config["jwks_uri"] == base + "/auth/jwks"
    assert config["userinfo_endpoint"] == base + "/auth/userinfo"
    assert config["introspection_endpoint"] == base + "/auth/introspect"
    assert config["revocation_endpoint"] == base + "/auth/revoke"
    assert config["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
    ]
    assert config["response_types_supported"] == ["code"]
    assert config["code_challenge_methods_supported"] == ["S256"]  # never plain (checklist 1.10)
    assert config["authorization_response_iss_parameter_supported"] is True
    assert set(config["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    }
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["ES384", "RS384"]
    assert set(config["capabilities"]) == {
        "launch-standalone",
        "launch-ehr",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "context-standalone-patient",
        "context-ehr-patient",
        "context-banner",
        "context-style",
        "permission-v1",
        "permission-v2",
        "permission-patient",
        "permission-user",
        "permission-offline",
        "permission-online",
        "sso-openid-connect",
    }
    assert {"openid", "fhirUser", "launch/patient", "offline_access"} <= set(
        config["scopes_supported"]
    )
    # Every advertised endpoint answers (an OAuth error is fine; a 404 is a lie).
    for key in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        assert http.post(config[key], data={}).status_code in (400, 401), key
    assert http.get(config["jwks_uri"]).status_code == 200
    assert http.get(config["userinfo_endpoint"]).status_code == 401
    assert http.get(config["authorization_endpoint"]).status_code == 400  # an error page


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/auth/token", "POST"),
        ("/auth/introspect", "POST"),
        ("/auth/revoke", "POST"),
        ("/auth/jwks", "GET"),
    ],
)
def test_cors_preflight_allows_the_authorization_header(
    http: httpx.Client, path: str, methods: str
) -> None:
    r = http.options(
        path,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": methods,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert methods in r.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed  # "*" would not cover Authorization


def test_token_responses_carry_cors_for_browser_clients(http: httpx.Client, secret_client) -> None:
    client, secret = secret_client
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    headers = {"Origin": "https://app.example", **basic(client.client_id, secret)}
    ok = http.post("/auth/token", data=form, headers=headers)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "*"
    failed = http.post("/auth/token", data={}, headers={"Origin": "https://app.example"})
    assert failed.headers["access-control-allow-origin"] == "*"  # errors readable too


async def test_database_outage_is_503_with_retry_after(database: EmbeddedDatabase) -> None:
    port = free_port()  # nothing listens there
    settings = auth_settings(
        database, 8080, mongodb_uri=f"mongodb://127.0.0.1:{port}/?directConnection=true",
        db_timeout_ms=300,
    )  # fmt: skip
    services = AuthServices.create(settings)
    transport = httpx.ASGITransport(app=auth_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_base) as http:
            form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
            r = await http.post("/auth/token", data=form, headers=basic("some-client", "secret"))
            oauth_error(r, 503, "temporarily_unavailable")
            assert r.headers["retry-after"] == "5"
            r = await http.get("/auth/jwks")
            assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
    finally:
        services.close()


async def test_plain_http_public_url_off_loopback_is_refused_not_500(
    database: EmbeddedDatabase,
) -> None:
    settings = auth_settings(database, 8080, base_url="http://phr.example.com")
    services = AuthServices.create(settings)
    transport = httpx.ASGITransport(app=auth_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_base) as http:
            for path in ("/auth/token", "/auth/introspect", "/auth/revoke"):
                r = await http.post(path, data={"grant_type": "client_credentials", "token": "t"})
                oauth_error(r, 400, "insecure_transport")
    finally:
        services.close()


def test_every_auth_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"PHR_{name.upper()}"
        for name in AuthSettings.model_fields
        if f"`PHR_{name.upper()}`" not in readme
    ]
    assert not missing, f"README configuration table lacks {missing}"
