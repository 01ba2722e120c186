"""`python -m seed_data serve` (what `make run` runs): the server, plus the demo scenario on first
start.

The server starts exactly as `python -m fhir_server serve` does (same launcher, so the embedded
database is started when `PHR_MONGODB_URI` is unset and stopped on Ctrl-C or SIGTERM). A background
thread waits for `/readyz`, asks whether the database holds any Patient, and if not loads
`seed_data/demo/` over HTTP, like any other client would. On later starts the demo is not loaded
again (and loading it again would change nothing: every entry is a PUT of unchanged content).

The file holding the Patients is loaded last, so a load cut short (Ctrl-C on the first start)
leaves no Patient behind and the next start loads the demo again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path

import httpx

from fhir_server import cli as fhir_cli
from fhir_server.app import auth_settings
from fhir_server.logs import configure_logging
from fhir_server.settings import get_settings
from seed_data import auth
from seed_data.loader import Credentials, LoaderError, Options, load, remote
from seed_data.logins import seed_logins
from seed_data.report import Report
from smart_auth.services import AuthServices

DEMO = Path(__file__).resolve().parent / "demo"
FAMILY = "01-family.json"  # the Patients (and who may see what): loaded last
DEMO_PATIENT = "demo-parent"  # present when the demo family is loaded
READY_TIMEOUT = 180.0
log = logging.getLogger("phr")


def probe_address(host: str) -> str:
    """Where this machine reaches a server listening on `host`."""
    if host in {"", "0.0.0.0"}:
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class DemoSeeder:
    """Loads the demo scenario once the server answers, if the database holds no Patient."""

    def __init__(self, root_url: str, demo: Path = DEMO) -> None:
        self.root_url = root_url
        # Its own server, on loopback: with TLS on, the certificate names the public host, not
        # the loopback address the seeder dials, so it is not checked on this one hop.
        self.verify = not root_url.startswith("https:")
        self.demo = demo
        self.stopping = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self._run, name="demo-seeder", daemon=True)

    def start(self) -> DemoSeeder:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Cancel a load still running (the server is going away) and wait for the thread."""
        self.stopping.set()
        loop, task = self.loop, self.task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                loop.call_soon_threadsafe(task.cancel)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.task = asyncio.current_task()
            await self.seed()

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            log.info("demo scenario: loading interrupted by shutdown")
        except Exception:
            log.exception("demo scenario: loading failed")

    async def wait_ready(self, client: httpx.AsyncClient) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if (await client.get(self.root_url + "/readyz")).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        return False

    async def alive(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2, verify=self.verify) as client:
                return (await client.get(self.root_url + "/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def seed(self) -> None:
        async with httpx.AsyncClient(timeout=30, verify=self.verify) as client:
            if not await self.wait_ready(client):
                log.error("demo scenario: the server was not ready in %.0f s", READY_TIMEOUT)
                return
        # The launcher has started the database by now (PHR_MONGODB_URI is set): sign the
        # loader's tokens with the server's own keys.
        services = AuthServices.create(auth_settings(get_settings()))
        try:
            if await self._seed(self.root_url + "/fhir", auth.minted(services)):
                created = await asyncio.to_thread(seed_logins, services)
                if created.accounts or created.apps:
                    fields = {"accounts": created.accounts, "apps": created.apps}
                    log.info("demo logins created (DEMO ONLY)", extra={"fields": fields})
        finally:
            services.close()

    async def _seed(self, fhir: str, token: auth.TokenAuth) -> bool:
        """Load the demo into an empty database; True when the demo family is there."""
        headers = {"Accept": "application/fhir+json"}
        async with httpx.AsyncClient(timeout=30, auth=token, verify=self.verify) as client:
            answer = await client.get(
                fhir + "/Patient", params={"_summary": "count"}, headers=headers
            )
            answer.raise_for_status()
            patients = answer.json().get("total") or 0
            if patients:
                present = await client.get(fhir + "/Patient/" + DEMO_PATIENT, headers=headers)
        if patients:
            log.info(
                "demo scenario not loaded: the database already holds patients",
                extra={"fields": {"patients": patients}},
            )
            return present.status_code == 200
        records = sorted(f for f in self.demo.glob("*.json") if f.name != FAMILY)
        options = Options(progress=False)
        try:
            async with remote(fhir, Credentials(tokens=token, verify=self.verify)) as (
                session,
                base,
            ):
                report = await load(records, session, base, options)
                if report.ok:
                    family = await load([self.demo / FAMILY], session, base, options)
                    report = combine(report, family)
        except LoaderError as exc:
            log.error("demo scenario: %s", exc)
            return False
        if not report.ok and (self.stopping.is_set() or not await self.alive()):
            log.info("demo scenario: loading interrupted by shutdown; the next start loads it")
            return False
        fields = {
            "resources": report.resources,
            "loaded": report.total("loaded"),
            "failed": report.total("failed"),
            "seconds": round(report.elapsed, 1),
        }
        if report.ok:
            log.info("demo scenario loaded (see seed_data/README.md)", extra={"fields": fields})
        else:
            problems = [m for f in report.failures for m in f.messages][:20]
            fields["problems"] = problems  # type: ignore[assignment]
            log.error("demo scenario loaded with failures", extra={"fields": fields})
        return report.ok


def combine(first: Report, second: Report) -> Report:
    first.merge(second)
    first.files += second.files
    first.bundles += second.bundles
    first.finished = second.finished
    return first


def serve(host: str | None, port: int | None, workers: int | None, demo: bool = True) -> int:
    settings = get_settings()
    configure_logging(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the server logs the seeder's requests
    port = port or settings.port
    seeder = None
    if demo:
        scheme = "https" if settings.tls_certfile else "http"
        root = f"{scheme}://{probe_address(host or settings.host)}:{port}"
        seeder = DemoSeeder(root).start()
    try:
        fhir_cli.serve(settings, host, port, workers)
    except KeyboardInterrupt:
        return 130
    finally:
        if seeder is not None:
            seeder.stop()
    return 0
