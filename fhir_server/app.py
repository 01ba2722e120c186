"""`create_app()`: the one place that wires the server together."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fhir_server.audit import AuditTrail
from fhir_server.bearer import AccessMiddleware, FhirCors
from fhir_server.capabilities import capability_statement
from fhir_server.directory import FhirDirectory
from fhir_server.errors import FHIR_JSON, FhirError, unavailable
from fhir_server.indexing import ResourceIndexer
from fhir_server.logs import RequestLogMiddleware, configure_logging, request_id
from fhir_server.routes import INTERACTIONS, fhir_routes
from fhir_server.services import Services, services
from fhir_server.settings import Settings, get_settings
from fhir_server.storage.database import connect, is_unavailable
from fhir_server.storage.repository import Repository
from smart_auth.router import auth_router, smart_configuration
from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings
from smart_auth.store import run_sync

log = logging.getLogger("phr")
_YOUNG_GENERATION = 100_000  # allocations between collections of the youngest generation
_SWITCH_INTERVAL = 0.001  # seconds a thread holds the GIL while another waits (CPython: 0.005)
_ISSUE_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly"}


def _is_fhir(request: Request) -> bool:
    return request.url.path.startswith("/fhir")


def _render(request: Request, error: FhirError) -> Response:
    if _is_fhir(request):
        return Response(error.outcome(), error.status, error.headers, media_type=FHIR_JSON)
    return JSONResponse(
        {"error": error.code, "detail": error.diagnostics}, error.status, error.headers
    )


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return _render(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _ISSUE_CODES.get(exc.status_code, "processing")
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and _is_fhir(request):
        detail = f"No FHIR interaction at {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not supported on {request.url.path}"
    else:
        detail = str(exc.detail)
    return _render(request, FhirError(detail, exc.status_code, code, headers=headers))


async def _validation_error(request: Request, exc: Exception) -> Response:
    return _render(request, FhirError(f"Invalid request: {exc}", 400, "invalid"))


async def _database_error(request: Request, exc: Exception) -> Response:
    if is_unavailable(exc):
        log.warning("database unavailable: %s", type(exc).__name__)
        return _render(request, unavailable())
    log.error("database error", exc_info=exc)
    return _render(request, FhirError("The database refused the operation", 500, "exception"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    # rendered outside RequestLogMiddleware (Starlette's ServerErrorMiddleware), so set the id here
    headers = {"X-Request-ID": request_id.get()}
    return _render(request, FhirError("Internal server error", 500, "exception", headers=headers))


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database answers a ping, through both clients (the FHIR API's, and the
    authorization server's synchronous one, which every token check may need)."""
    auth_client = request.app.state.auth.store.client
    try:
        await services(request).repository.client.admin.command("ping")
        await run_sync(auth_client.admin.command, "ping")
    except PyMongoError:
        return JSONResponse(
            {"status": "unavailable", "database": "down"}, 503, {"Retry-After": "5"}
        )
    return JSONResponse({"status": "ok", "database": "up"})


def services_of(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


def auth_settings(settings: Settings) -> AuthSettings:
    """The authorization server's settings, on the FHIR server's database and public URL."""
    return AuthSettings(
        mongodb_uri=settings.mongodb_uri,
        data_dir=settings.data_dir,
        db_name=settings.db_name,
        db_timeout_ms=settings.db_timeout_ms,
        port=settings.port,
        base_url=settings.public_base,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    directory = FhirDirectory(lambda: services_of(app), settings.self_consent_age)
    auth = AuthServices.create(
        auth_settings(settings), fhir_base=settings.fhir_base, directory=directory
    )
    smart = smart_configuration(auth.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(settings)
        repository = Repository(client, settings.db_name, ResourceIndexer(settings.fhir_base))
        app.state.services = Services(settings, repository)
        app.state.audit = audit = AuditTrail(repository.db)
        try:
            await repository.ensure_history_indexes()
            await repository.upgrade_layout()
            await auth.start()
        except PyMongoError as exc:
            log.warning("database not reachable at start-up (%s); serving 503 until it is", exc)
        await audit.start()
        # What is alive now lives as long as the app: keep it out of the collector's way, so a
        # full collection scans only what requests allocate (scanning the ~130k start-up objects
        # took 50-200 ms each time, more often the more a request allocates, as a token check).
        gc.collect()
        gc.freeze()
        # A young generation of 100,000 objects instead of 700: a request's objects (a Synthea
        # Bundle allocates ~150k) mostly die before a collection has to look at them, instead of
        # being scanned and promoted many times over. Measured on W4: 40-48 -> ~4 ms of
        # collection per bundle (docs/benchmarks.md, "fourth round").
        threshold = gc.get_threshold()
        gc.set_threshold(_YOUNG_GENERATION, *threshold[1:])
        # A Bundle's CPU work runs in a worker thread (offload.py). While it holds the GIL, the
        # event loop, which sends the other transactions' statements, waits up to the switch
        # interval for it each time it wakes. 1 ms instead of 5: W4 ingest 2.49 -> 2.81
        # bundles/s (docs/benchmarks.md, "third round").
        sys.setswitchinterval(_SWITCH_INTERVAL)
        yield
        gc.set_threshold(*threshold)
        gc.unfreeze()
        await audit.close()
        auth.close()
        await client.close()

    async def smart_discovery(request: Request) -> Response:
        """SMART App Launch discovery, always JSON (checklist 1.1-1.4), readable cross-origin."""
        return JSONResponse(smart, headers={"Access-Control-Allow-Origin": "*"})

    app = FastAPI(title="PHR server", lifespan=lifespan, openapi_url=None, docs_url=None)
    app.state.auth = auth
    app.state.capability_statement = capability_statement(
        settings.fhir_base, [(i.code, i.level) for i in INTERACTIONS], smart
    )
    app.router.routes.append(
        Route("/fhir/.well-known/smart-configuration", smart_discovery, methods=["GET", "HEAD"])
    )
    app.router.routes.extend(fhir_routes())
    app.include_router(auth_router(auth))
    app.router.routes.extend([Route("/healthz", healthz), Route("/readyz", readyz)])
    if settings.bench_routes:
        from fhir_server.bench_auth_routes import bare_auth_routes
        from fhir_server.bench_routes import bare_routes

        app.router.routes.extend([*bare_auth_routes(), *bare_routes()])
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PyMongoError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(AccessMiddleware)
    app.add_middleware(FhirCors)
    app.add_middleware(RequestLogMiddleware)
    return app
