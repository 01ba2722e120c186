"""Operations: health and readiness, request ids, JSON logs without query strings, errors for
unknown routes, and the CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from uuid import uuid4

import httpx
import orjson
import pytest
from starlette.routing import Route

from fhir_server import bearer
from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.fhir_server.helpers import FHIR, assert_outcome
from tests.support import ROOT, TLS, Server, wait_until

R4_TYPES = orjson.loads((ROOT / "fhir_server" / "definitions" / "resource-types.json").read_bytes())
TYPE_INTERACTIONS = {
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
}
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def logged(database, tmp_path_factory) -> Iterator[Server]:
    """A server logging every request (INFO), on the shared database."""
    env = {"PHR_MONGODB_URI": database.uri, "PHR_DB_NAME": "phr_test", "PHR_LOG_LEVEL": "INFO"}
    srv = Server(env, tmp_path_factory.mktemp("logged") / "server.log").start()
    yield srv
    srv.stop()


def log_lines(server: Server) -> list[dict]:
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    return [orjson.loads(line) for line in lines]  # every line is one JSON object


def request_line(server: Server, rid: str) -> dict:
    """The log line of the request with id `rid`, once it is written."""

    def find() -> dict | None:
        return next(
            (r for r in log_lines(server) if r.get("msg") == "request" and r["request_id"] == rid),
            None,
        )

    return wait_until(find, 10, what=f"the log line of request {rid}")


def test_healthz_and_readyz(server):
    health = httpx.get(server.url + "/healthz", verify=TLS, timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz", verify=TLS, timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "up"}


@pytest.mark.parametrize("path", ["/healthz", "/fhir/metadata", "/fhir/Patient/missing", "/fhir/x"])
def test_request_id_is_echoed(server, path):
    r = httpx.get(
        server.url + path, headers={"X-Request-ID": "client-id_1.2-3"}, verify=TLS, timeout=10
    )
    assert r.headers["x-request-id"] == "client-id_1.2-3"


@pytest.mark.parametrize(
    "hostile",
    ["a b", "x" * 65, "<script>", "id;drop", "caf\xe9", "", "a\tb", "../../etc"],
)
def test_hostile_request_id_is_replaced(server, hostile):
    r = httpx.get(
        server.url + "/healthz",
        headers={"X-Request-ID": hostile.encode("latin-1")},
        verify=TLS,
        timeout=10,
    )
    assert r.status_code == 200
    assert HEX_ID.match(r.headers["x-request-id"]), r.headers["x-request-id"]
    assert r.headers["x-request-id"] != hostile


def test_request_id_is_generated_per_request(server):
    ids = {
        httpx.get(server.url + "/healthz", verify=TLS, timeout=10).headers["x-request-id"]
        for _ in range(3)
    }
    assert len(ids) == 3
    assert all(HEX_ID.match(i) for i in ids)


def test_log_lines_are_json_with_request_id(logged):
    with httpx.Client(
        base_url=logged.url + "/fhir", verify=TLS, timeout=10, auth=logged.auth()
    ) as c:
        r = c.post(
            "/Patient",
            content=b'{"resourceType":"Patient"}',
            headers={"Content-Type": FHIR, "X-Request-ID": "log-check-1"},
        )
        assert r.status_code == 201
    line = request_line(logged, "log-check-1")
    assert line["method"] == "POST"
    assert line["path"] == "/fhir/Patient"
    assert line["status"] == 201
    assert line["level"] == "INFO"
    assert isinstance(line["ms"], float | int)
    assert all("request_id" in entry for entry in log_lines(logged))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/fhir/Patient?name=SECRETNAME", None),
        ("GET", "/fhir/metadata?given=SECRETNAME&_format=json", None),
        ("GET", "/fhir/Patient/some-id?name=SECRETNAME", None),
        ("GET", "/fhir/_history?_count=SECRETNAME", None),
        ("GET", "/fhir/_history?_since=SECRETNAME", None),
        ("POST", "/fhir/Patient?x=SECRETNAME", b'{"resourceType":"Patient","SECRETNAME":1}'),
        ("POST", "/fhir/Patient", b'{"resourceType":"Patient","name":[{"family":SECRETNAME}]}'),
        ("POST", "/fhir/Patient", b'{"resourceType":"Patient","active":"SECRETNAME"}'),
    ],
)
def test_logs_never_hold_query_strings_or_bodies(logged, method, path, body):
    rid = f"secret-{uuid4().hex}"
    r = httpx.request(
        method,
        logged.url + path,
        content=body,
        headers={
            "X-Request-ID": rid,
            "Content-Type": FHIR,
            "Authorization": "Bearer SECRETTOKEN",
            "Cookie": "session=SECRETCOOKIE",
        },
        verify=TLS,
        timeout=10,
    )
    assert r.status_code < 500, r.text
    line = request_line(logged, rid)
    assert line["path"] == path.split("?", 1)[0]
    text = logged.log.read_text()
    for secret in ("SECRETNAME", "SECRETTOKEN", "SECRETCOOKIE"):
        assert secret not in text


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Patient/x/y/z",
        "/fhir/Patient/x/_history/1/extra",
        "/fhir/a/b/c/d/e",
        "/fhir/_history/x/y",
        "/fhir/metadata/extra",  # read as Type/id: an unknown type
    ],
)
def test_unknown_fhir_paths_are_404_operation_outcome(server, path):
    r = httpx.get(server.url + path, verify=TLS, timeout=10, auth=server.auth())
    assert_outcome(r, 404, code="not-found")  # "No FHIR interaction", or "Unknown resource type"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/fhir/Patient/x", {"GET", "PUT", "PATCH", "DELETE"}),
        ("PUT", "/fhir/Patient/x/_history", {"GET"}),
        ("POST", "/fhir/Patient/x/_history", {"GET"}),
        ("DELETE", "/fhir/Patient/x/_history/1", {"GET"}),
        ("PATCH", "/fhir/Patient/x/_history/1", {"GET"}),
    ],
)
def test_wrong_method_is_405_operation_outcome(server, method, path, allowed):
    r = httpx.request(
        method, server.url + path, content=b"{}", verify=TLS, timeout=10, auth=server.auth()
    )
    assert_outcome(r, 405, f"{method} is not supported", code="not-supported")
    assert allowed <= {m.strip() for m in r.headers["allow"].split(",")}


def test_capability_statement(client, fhir_base):
    r = client.get("/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    statement = r.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert statement["status"] == "active"
    assert "json" in statement["format"]
    assert "application/fhir+json" in statement["format"]
    assert not {"xml", "application/fhir+xml"} & set(statement["format"])
    assert "application/json-patch+json" in statement["patchFormat"]
    assert statement["implementation"]["url"] == fhir_base
    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    assert "history-system" in {i["code"] for i in rest["interaction"]}
    resources = {res["type"]: res for res in rest["resource"]}
    assert set(resources) == set(R4_TYPES), "every R4 resource type, and only those"
    assert "Citation" not in resources, "R4B-only types are not R4"
    for rtype, res in resources.items():
        assert {i["code"] for i in res["interaction"]} >= TYPE_INTERACTIONS, rtype
        assert res["versioning"] == "versioned-update"
        assert res["readHistory"] is True
        assert res["updateCreate"] is True


def test_head_of_metadata(server):
    r = httpx.head(server.url + "/fhir/metadata", verify=TLS, timeout=10)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """create_app() configures logging for the process; put pytest's set-up back afterwards."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = [
        (lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled)
        for lg in map(logging.getLogger, names)
    ]
    yield
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


async def test_unexpected_error_is_500_carrying_the_request_id(
    capsys, restore_logging, monkeypatch
):
    """No input makes the real server fail, so an in-process app gets a failing route (public,
    since there is no database to check a token against)."""
    monkeypatch.setattr(bearer, "PUBLIC", bearer.PUBLIC | {"/fhir/x/y/z/boom"})
    app = create_app(Settings(mongodb_uri="mongodb://127.0.0.1:9/?directConnection=true"))

    async def boom(request):
        raise RuntimeError("boom")

    app.router.routes.append(Route("/fhir/x/y/z/boom", boom))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # no lifespan, no db
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/fhir/x/y/z/boom", headers={"X-Request-ID": "boom-1"})
    assert_outcome(r, 500, "Internal server error", code="exception")
    assert r.headers["x-request-id"] == "boom-1"
    lines = [
        orjson.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    error = next(line for line in lines if line["msg"] == "unhandled error")
    assert error["request_id"] == "boom-1"
    assert "RuntimeError: boom" in error["exc"]
    request = next(line for line in lines if line["msg"] == "request")
    assert (request["request_id"], request["status"]) == ("boom-1", 500)
