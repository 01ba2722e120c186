"""The audit trail: every FHIR request that needed a token, allowed or refused, is accounted for.

Who (client, user, the token's patient and `jti`, never the token), what (method, path, query),
which patients (the token's, the ones a search named or was narrowed to, and the compartment of
every resource a decision was made on), when, from where, and how it ended.

Requests with the same who, which patients, method and outcome within one flush interval (1 s)
share one record: its `count`, first and last instants, and the first `MAX_REQUESTS` paths with
their request ids. An app reading a patient's record a thousand times a second then costs the
database one write a second, not a thousand (an insert per read would cost more than the read).
A background task writes the records, so a request never waits for its own; when the backlog
passes its bound (the database is away or too slow) the API refuses new requests with 503 rather
than serve data it cannot account for (fail closed; security catalogue section 1.8).

Not yet: serving these records as FHIR AuditEvents to the patient, and a tamper-evident chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

log = logging.getLogger("phr.audit")

COLLECTION = "audit"
MAX_REQUESTS = 100  # paths kept per record; `count` has them all


def outcome(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403, 404):
        return "denied"
    return "failure" if status < 500 else "error"


class AuditTrail:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], interval: float = 1.0, backlog: int = 20_000
    ) -> None:
        self.collection = db[COLLECTION]
        self.interval = interval
        self.backlog = backlog
        self.pending: list[dict[str, Any]] = []  # written, or to retry
        self.open: dict[tuple[Any, ...], dict[str, Any]] = {}  # this interval's, by who/what
        self.task: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()

    @property
    def accepting(self) -> bool:
        return len(self.pending) + len(self.open) < self.backlog

    async def start(self) -> None:
        with contextlib.suppress(PyMongoError):  # created on a later start if the db is away
            await self.collection.create_indexes(
                [
                    IndexModel([("pat", 1), ("at", DESCENDING)]),
                    IndexModel([("client", 1), ("at", DESCENDING)]),
                    IndexModel([("at", DESCENDING)]),
                ]
            )
        self.task = asyncio.create_task(self._run(), name="audit-trail")

    async def close(self) -> None:
        """Write what is pending and stop (a cancelled insert could be lost, so no cancel)."""
        self.stopping.set()
        if self.task is not None:
            await self.task

    def record(self, *, path: str, query: str | None, request_id: str, **who: Any) -> None:
        """Account for one request; `who` holds everything but the request's own path, in
        hashable values (`pat` a tuple): it is the key alike requests share a record by."""
        key = tuple(sorted(who.items()))
        now = datetime.now(UTC)
        entry = self.open.get(key)
        if entry is None:
            entry = {"_id": uuid.uuid4().hex, "at": now, "count": 0, "requests": [], **who}
            self.open[key] = entry
        entry["count"] += 1
        entry["last"] = now
        if len(entry["requests"]) < MAX_REQUESTS:
            entry["requests"].append({"path": path, "query": query, "request_id": request_id})

    async def _run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.interval)
            await self.flush()

    async def flush(self) -> None:
        self.pending.extend(self.open.values())
        self.open = {}
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            await self.collection.insert_many(batch, ordered=False)
        except PyMongoError as exc:
            # Keep them for the next attempt (ids make a retried insert idempotent: duplicates
            # of records already written are refused and dropped).
            written = {
                e["op"]["_id"]
                for e in getattr(exc, "details", {}).get("writeErrors", [])
                if e.get("code") == 11000
            }
            self.pending[:0] = [r for r in batch if r["_id"] not in written]
            log.warning("audit records not written yet: %s", type(exc).__name__)
