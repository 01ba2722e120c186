"""EHR launch (SMART checklist 2.6-2.7) and the `python -m smart_auth` user and launch commands."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from smart_auth.cli import main
from tests.smart_auth.browser import Browser, forms, redirect_params
from tests.smart_auth.conftest import AuthServer
from tests.smart_auth.flows import (
    EHR,
    App,
    add_user,
    approve,
    authorization_request,
    exchange,
    log_in,
    register_app,
    start,
)
from tests.smart_auth.helpers import jwt_parts
from tests.support import ROOT

LAUNCH_URI = "https://app.example.com/launch"


def cli_env(server: AuthServer) -> dict[str, str]:
    return {
        "PHR_MONGODB_URI": server.settings.mongodb_uri or "",
        "PHR_DB_NAME": server.settings.db_name,
        "PHR_BASE_URL": server.settings.public_base,
        "PHR_ARGON2_PROFILE": "CHEAPEST",
    }


def cli_process(server: AuthServer, *args: str) -> subprocess.CompletedProcess:
    """`python -m smart_auth ...` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "smart_auth", *args],
        cwd=ROOT,
        env={**os.environ, **cli_env(server)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def cli(
    auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., subprocess.CompletedProcess]:
    """The same CLI in-process (a subprocess costs seconds of imports per call)."""
    for name, value in cli_env(auth_server).items():
        monkeypatch.setenv(name, value)

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


@pytest.fixture
def app(auth_server: AuthServer) -> App:
    return register_app(auth_server, launch_uri=LAUNCH_URI)


def cli_launch(server: AuthServer, app: App, patient: str) -> dict:
    done = cli_process(server, "launch", patient, "--client", app.client_id)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_ehr_launch_from_the_cli_gives_the_patient_context(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    user = add_user(auth_server)
    minted = cli_launch(auth_server, app, "alice")
    url = urlsplit(minted["launch_url"])
    assert url.geturl().startswith(LAUNCH_URI + "?")
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query == {"iss": auth_server.fhir_base, "launch": minted["launch"]}

    # The app, launched, authorizes with `launch` and the `launch` scope.
    request = authorization_request(auth_server, app, EHR, launch=query["launch"])
    answer = approve(browser, auth_server, app, user, request)
    body = exchange(browser.http, auth_server, app, answer["code"], request.verifier).json()
    assert body["patient"] == "alice"
    assert body["need_patient_banner"] is False  # launched from the portal, which shows it
    assert set(body["scope"].split()) == set(EHR.split())
    assert jwt_parts(body["access_token"])[1]["patient"] == "alice"


def test_guardian_ehr_launch_needs_no_picker(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    user = add_user(auth_server, "RelatedPerson/guardian")
    launch = auth_server.services.launches.mint("dana", app.client_id)
    request = authorization_request(auth_server, app, EHR, launch=launch)
    page = log_in(browser, start(browser, request), user)
    (form,) = forms(page.text)
    assert form.value("patient") == "dana" and "patient" not in form.radios
    assert "Dana Example" in page.text


def test_launch_for_a_patient_the_user_may_not_act_for_is_denied(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    user = add_user(auth_server)  # Patient/alice
    launch = auth_server.services.launches.mint("bob", app.client_id)
    request = authorization_request(auth_server, app, EHR, launch=launch)
    answer = redirect_params(log_in(browser, start(browser, request), user))
    assert answer["error"] == "access_denied" and answer["state"] == request.state


def test_launch_minted_for_another_app_is_refused(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    other = register_app(auth_server)
    launch = auth_server.services.launches.mint("alice", other.client_id)
    request = authorization_request(auth_server, app, EHR, launch=launch)
    answer = redirect_params(browser.http.get("/auth/authorize", params=request.params))
    assert answer["error"] == "invalid_request"


def test_launch_without_the_launch_scope_is_invalid_scope(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    launch = auth_server.services.launches.mint("alice", app.client_id)
    request = authorization_request(auth_server, app, "openid patient/*.rs", launch=launch)
    answer = redirect_params(browser.http.get("/auth/authorize", params=request.params))
    assert answer["error"] == "invalid_scope"


def test_portal_launch_redirects_to_the_app_launch_url(
    auth_server: AuthServer, browser: Browser, app: App
) -> None:
    user = add_user(auth_server)
    signed_in = browser.submit(
        browser.open("/auth/login"), {"username": user.username, "password": user.password}
    )
    csrf = forms(signed_in.text)[0].value("csrf") or ""
    r = browser.http.post(
        "/auth/launch", data={"csrf": csrf, "client_id": app.client_id, "patient": "alice"}
    )
    assert r.status_code == 303 and r.headers["location"].startswith(LAUNCH_URI + "?iss=")
    forbidden = browser.http.post(
        "/auth/launch", data={"csrf": csrf, "client_id": app.client_id, "patient": "bob"}
    )
    assert forbidden.status_code == 403
    forged = browser.http.post(
        "/auth/launch", data={"csrf": "x", "client_id": app.client_id, "patient": "alice"}
    )
    assert forged.status_code == 403


def test_users_cli_adds_and_lists_accounts(auth_server: AuthServer, browser: Browser, cli) -> None:
    done = cli(
        "users",
        "add",
        "Carol.Cli",
        "--fhir-user",
        "Patient/alice",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["username"] == "carol.cli" and created["fhir_user"] == "Patient/alice"
    assert "password" not in done.stdout and "correct horse" not in done.stdout
    credentials = {"username": "Carol.Cli", "password": "correct horse battery"}
    page = browser.submit(browser.open("/auth/login"), credentials)
    assert "Signed in" in page.text

    listed = cli("users", "list", "--json")
    assert {"username": "carol.cli", "fhir_user": "Patient/alice", "totp": False} in json.loads(
        listed.stdout
    )
    again = cli(
        "users",
        "add",
        "carol.cli",
        "--fhir-user",
        "Patient/alice",
        "--password-stdin",
        stdin="another password\n",
    )
    assert again.returncode == 1 and "taken" in again.stderr


def test_users_cli_sets_up_totp_and_refuses_bad_input(cli) -> None:
    done = cli(
        "users",
        "add",
        "dave-totp",
        "--fhir-user",
        "Patient/bob",
        "--password-stdin",
        "--totp",
        stdin="long enough pw\n",
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["totp_uri"].startswith("otpauth://totp/")
    for args, stdin in [
        (
            ("users", "add", "eve", "--fhir-user", "Observation/1", "--password-stdin"),
            "long pw 123\n",
        ),
        (("users", "add", "eve", "--fhir-user", "Patient/x", "--password-stdin"), "short\n"),
        (
            ("users", "add", "-bad name", "--fhir-user", "Patient/x", "--password-stdin"),
            "pw123456\n",
        ),
    ]:
        refused = cli(*args, stdin=stdin)
        assert refused.returncode != 0, args


def test_launch_cli_refuses_an_unknown_client(cli) -> None:
    done = cli("launch", "alice", "--client", "no-such-client")
    assert done.returncode == 1 and "no client" in done.stderr


def test_launch_by_a_client_not_registered_for_it_is_invalid_scope(
    auth_server: AuthServer, browser: Browser
) -> None:
    app = register_app(auth_server, scope="launch/patient openid fhirUser patient/*.rs")
    launch = auth_server.services.launches.mint("alice", app.client_id)
    request = authorization_request(auth_server, app, EHR, launch=launch)
    answer = redirect_params(browser.http.get("/auth/authorize", params=request.params))
    assert answer["error"] == "invalid_scope"
