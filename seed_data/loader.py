"""The bundle loader: posts prepared Bundles to a FHIR server and tallies what happened.

It talks HTTP to a running server (`--url`) or, without one, to the app itself in this process
through `httpx.ASGITransport` (starting the embedded database when `PHR_MONGODB_URI` is unset). Each
worker loads one file at a time; the Bundles of one file are posted in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from seed_data import auth
from seed_data.progress import Progress
from seed_data.report import FAILED, INVALID, LOADED, UNCHANGED, Failure, Report
from seed_data.sources import (
    Chunk,
    Prepared,
    SourceError,
    discover,
    entry_type,
    is_shared_first,
    prepare,
)

FHIR_JSON = "application/fhir+json"
_ATTEMPTS = 5
# HAPI's code for "update succeeded: no changes were detected": honoured when a server says it
_NO_CHANGE = {"SUCCESSFUL_UPDATE_NO_CHANGE", "SUCCESSFUL_CREATE_WITH_CONDITIONAL_MATCH"}


@dataclass
class Options:
    workers: int = 2
    batch_size: int = 500
    progress: bool = True


class LoaderError(Exception):
    """The load cannot start (no server, no database, no files)."""


# -- talking to the server -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: no answer at all
    body: Any
    sent_at: float  # server clock, epoch seconds, when the Bundle was sent
    error: str | None = None


class Sender:
    """Posts Bundles, retrying what is worth retrying (503, 429, write conflicts, lost connections).

    A transaction that failed wrote nothing and the loader's entries are idempotent, so a retry is
    always safe.
    """

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url
        self.offset = 0.0  # server clock minus ours, when they clearly differ

    def _learn_clock(self, response: httpx.Response) -> None:
        date = response.headers.get("date")
        if not date:
            return
        try:
            skew = parsedate_to_datetime(date).timestamp() - time.time()
        except (TypeError, ValueError):
            return
        # HTTP dates have one-second resolution: only a clearly different clock is corrected
        self.offset = skew if abs(skew) > 2 else 0.0

    async def post(self, body: bytes) -> Answer:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        delay = 0.2
        answer = Answer(None, None, time.time())
        for attempt in range(_ATTEMPTS):
            sent_at = time.time() + self.offset
            try:
                response = await self.client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # connection refused or lost: worth a retry
                answer = Answer(None, None, sent_at, f"{type(exc).__name__}: {exc}")
            except httpx.HTTPError as exc:
                return Answer(None, None, sent_at, f"{type(exc).__name__}: {exc}")
            else:
                self._learn_clock(response)
                try:
                    parsed = orjson.loads(response.content) if response.content else None
                except orjson.JSONDecodeError:
                    parsed = response.text[:500]
                answer = Answer(response.status_code, parsed, sent_at)
                if not _retryable(response.status_code, parsed):
                    return answer
                if retry_after := response.headers.get("retry-after"):
                    delay = min(float(retry_after) if retry_after.isdigit() else delay, 5.0)
            if attempt + 1 < _ATTEMPTS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return answer


def _retryable(status: int, body: Any) -> bool:
    if status in {429, 503}:
        return True
    if status in {409, 412}:
        # a concurrent write to the same resource (another worker loading a shared Organization)
        text = " ".join(outcome_messages(body)).lower()
        return "concurrently" in text or "version check failed" in text
    return False


def outcome_messages(outcome: Any) -> list[str]:
    """The diagnostics of an OperationOutcome, one line per issue."""
    if not isinstance(outcome, dict):
        return [str(outcome)] if outcome else []
    messages = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
        messages.append(str(text or issue.get("code") or "error"))
    return messages


def _status(value: Any) -> int | None:
    if isinstance(value, str) and value.split(" ", 1)[0].isdigit():
        return int(value.split(" ", 1)[0])
    return None


def _instant(value: Any) -> tuple[float, float] | None:
    """(epoch seconds, resolution) of a FHIR instant or an HTTP date."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp(), 0.001
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp(), 1.0
    except (TypeError, ValueError):
        return None


def _unchanged(response: dict[str, Any], sent_at: float) -> bool:
    """Did an update (200, not 201) leave the resource as it was? Yes if the server says so in the
    entry's outcome, if the version is still 1 (an update would have made version 2), or if the
    version it reports was written before this Bundle was sent."""
    outcome = response.get("outcome")
    if isinstance(outcome, dict):
        for issue in outcome.get("issue") or []:
            codings = ((issue or {}).get("details") or {}).get("coding") or []
            if any(isinstance(c, dict) and c.get("code") in _NO_CHANGE for c in codings):
                return True
    etag = response.get("etag")
    if isinstance(etag, str) and etag.removeprefix("W/").strip('"') == "1":
        return True
    stamp = _instant(response.get("lastModified"))
    if stamp is None:
        return False
    at, resolution = stamp
    return at + resolution <= sent_at


def classify(chunk: Chunk, answer: Answer) -> tuple[list[str | None], list[str]]:
    """For each entry: loaded, unchanged, failed (or None for reads); and the failure messages."""
    count = len(chunk.entries)
    body = answer.body
    if answer.status is None:
        return [FAILED] * count, [answer.error or "no answer from the server"]
    if answer.status >= 400 or not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return [FAILED] * count, outcome_messages(body) or [f"HTTP {answer.status}"]
    responses = body.get("entry") or []
    outcomes: list[str | None] = []
    messages: list[str] = []
    for index, sent in enumerate(chunk.entries):
        where = f"{chunk.where[index]} ({entry_type(sent)})"
        received = responses[index] if index < len(responses) else None
        response = (received or {}).get("response") if isinstance(received, dict) else None
        if not isinstance(response, dict):
            outcomes.append(FAILED)
            messages.append(f"{where}: no response entry")
            continue
        status = _status(response.get("status"))
        method = (sent.get("request") or {}).get("method")
        if status is None or status >= 400:
            outcomes.append(FAILED)
            details = outcome_messages(response.get("outcome")) or [
                f"status {response.get('status')}"
            ]
            messages.extend(f"{where}: {d}" for d in details)
        elif method in {"GET", "HEAD"}:
            outcomes.append(None)
        elif status == 201 or method == "DELETE":
            outcomes.append(LOADED)
        elif method == "POST":  # 200: a conditional create that found its resource
            outcomes.append(UNCHANGED)
        else:
            outcomes.append(UNCHANGED if _unchanged(response, answer.sent_at) else LOADED)
    return outcomes, messages


# -- the load --------------------------------------------------------------------------------------


class Loader:
    def __init__(
        self,
        options: Options,
        report: Report,
        progress: Progress,
        handle: Callable[[Prepared], Any],
    ) -> None:
        self.options = options
        self.report = report
        self.progress = progress
        self.handle = handle

    async def run(self, files: list[Path]) -> None:
        semaphore = asyncio.Semaphore(max(1, self.options.workers))

        async def one(path: Path) -> None:
            async with semaphore:
                await self.load_file(path)

        # Synthea's shared Organizations/Practitioners first: patient bundles point at them
        first = [f for f in files if is_shared_first(f)]
        rest = [f for f in files if not is_shared_first(f)]
        for group in (first, rest):
            await asyncio.gather(*(one(path) for path in group))

    async def load_file(self, path: Path) -> None:
        try:
            prepared = await asyncio.to_thread(prepare, path, self.options.batch_size)
        except SourceError as exc:
            self.report.failures.append(Failure(str(path), [str(exc)]))
            self.progress.advance(failed=1, file_done=True)
            return
        bad = prepared.problems
        for problem in bad:
            self.report.count(problem.resource_type, INVALID if self.report.dry_run else FAILED)
        if bad:
            self.report.failures.append(
                Failure(str(path), [f"{p.where}: {p.message}" for p in bad])
            )
        self.progress.advance(len(bad), failed=len(bad))
        await self.handle(prepared)
        self.progress.advance(file_done=True)


async def _post_chunks(
    sender: Sender, report: Report, progress: Progress, prepared: Prepared
) -> None:
    for chunk in prepared.chunks:
        answer = await sender.post(chunk.body())
        report.bundles += 1
        outcomes, messages = classify(chunk, answer)
        for entry, outcome in zip(chunk.entries, outcomes, strict=True):
            if outcome is not None:
                report.count(entry_type(entry), outcome)
        if messages:
            label = f"{prepared.path} {chunk.part}".rstrip()
            report.failures.append(Failure(label, messages, answer.status))
        progress.advance(len(chunk.entries), failed=outcomes.count(FAILED))


async def load(
    paths: list[Path],
    client: httpx.AsyncClient,
    url: str,
    options: Options,
) -> Report:
    """Load `paths` by posting to `url` (the FHIR base) through `client`."""
    files = _files(paths)
    report = Report(files=len(files))
    progress = Progress(len(files), enabled=options.progress)
    sender = Sender(client, url)

    async def handle(prepared: Prepared) -> None:
        await _post_chunks(sender, report, progress, prepared)

    try:
        await Loader(options, report, progress, handle).run(files)
    finally:
        progress.close()
    return report.finish()


async def dry_run(paths: list[Path], options: Options) -> Report:
    """Prepare every file and validate every resource locally; write nothing."""
    from seed_data.checks import check_prepared  # imports fhir.resources models: only here

    files = _files(paths)
    report = Report(dry_run=True, files=len(files))
    progress = Progress(len(files), enabled=options.progress)

    async def handle(prepared: Prepared) -> None:
        checked = await asyncio.to_thread(check_prepared, prepared)
        report.merge(checked)
        progress.advance(checked.resources, failed=checked.total(INVALID))

    try:
        await Loader(options, report, progress, handle).run(files)
    finally:
        progress.close()
    return report.finish()


def _files(paths: list[Path]) -> list[Path]:
    try:
        files = discover(paths)
    except FileNotFoundError as exc:
        raise LoaderError(str(exc)) from None
    if not files:
        raise LoaderError("no .json or .ndjson files found in " + ", ".join(map(str, paths)))
    return files


# -- where the server is -------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to a running server: a token, or a backend client's id and secret."""

    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    tokens: auth.TokenAuth | None = None  # tokens from elsewhere (the demo seeder's, minted)
    verify: bool = True  # TLS certificate checks (off only for the seeder's own loopback server)


async def _auth(client: httpx.AsyncClient, url: str, credentials: Credentials) -> httpx.Auth:
    if credentials.tokens is not None:
        return credentials.tokens
    if credentials.token:
        return auth.given(credentials.token)
    if not (credentials.client_id and credentials.client_secret):
        raise LoaderError(
            "the server needs a bearer token: set PHR_ACCESS_TOKEN, or pass --client-id with "
            "PHR_CLIENT_SECRET for a backend client (python -m smart_auth clients add)"
        )
    try:
        smart = (await client.get(url + "/.well-known/smart-configuration")).json()
        token_url = smart["token_endpoint"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        raise LoaderError(
            f"{url}/.well-known/smart-configuration names no token endpoint"
        ) from None
    found = auth.client_credentials(token_url, credentials.client_id, credentials.client_secret)
    try:
        await found.current()
    except httpx.HTTPError as exc:
        raise LoaderError(f"no token for client {credentials.client_id}: {exc}") from None
    return found


@asynccontextmanager
async def remote(
    url: str, credentials: Credentials = Credentials()
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client for a running server at `url` (its FHIR base, e.g. http://localhost:8080/fhir)."""
    url = url.rstrip("/")
    timeout = httpx.Timeout(600.0, connect=10.0)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        timeout=timeout, limits=limits, verify=credentials.verify
    ) as client:
        try:
            response = await client.get(url + "/metadata", headers={"Accept": FHIR_JSON})
        except httpx.HTTPError as exc:
            raise LoaderError(f"cannot reach the server at {url}: {exc}") from None
        if response.status_code != 200:
            raise LoaderError(f"{url}/metadata answered {response.status_code}: is it a FHIR base?")
        client.auth = await _auth(client, url, credentials)
        yield client, url


@asynccontextmanager
async def in_process() -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The app itself, in this process, on the configured database (the embedded one, started in
    `PHR_DATA_DIR` and stopped afterwards, when `PHR_MONGODB_URI` is unset)."""
    from fhir_server.app import create_app
    from fhir_server.embedded import EmbeddedDatabase
    from fhir_server.settings import get_settings

    settings = get_settings()
    embedded = None
    previous = os.environ.get("PHR_MONGODB_URI")
    if not settings.mongodb_uri:
        embedded = EmbeddedDatabase(settings.data_dir)
        try:
            await asyncio.to_thread(embedded.start)
        except RuntimeError as exc:
            raise LoaderError(
                f"{exc} (is a server already running on {settings.data_dir}? then use --url)"
            ) from None
        os.environ["PHR_MONGODB_URI"] = embedded.uri
        get_settings.cache_clear()
    try:
        app = create_app()
        level = logging.getLogger().level
        logging.getLogger().setLevel(max(level, logging.WARNING))  # no request log lines
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://phr.local",
                timeout=httpx.Timeout(600.0),
                auth=auth.minted(app.state.auth),
            ) as client:
                ready = await client.get("/readyz")
                if ready.status_code != 200:
                    raise LoaderError("the database does not answer (see PHR_MONGODB_URI)")
                yield client, "/fhir"
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
            if previous is None:
                os.environ.pop("PHR_MONGODB_URI", None)
            get_settings.cache_clear()


async def run(
    paths: list[Path],
    url: str | None,
    options: Options,
    *,
    dry: bool = False,
    credentials: Credentials = Credentials(),
) -> Report:
    if dry:
        return await dry_run(paths, options)
    _files(paths)  # fail on a bad path before starting anything
    target = remote(url, credentials) if url else in_process()
    async with target as (client, base):
        return await load(paths, client, base, options)


__all__ = [
    "Answer",
    "Credentials",
    "LoaderError",
    "Options",
    "Sender",
    "classify",
    "dry_run",
    "in_process",
    "load",
    "outcome_messages",
    "remote",
    "run",
]
