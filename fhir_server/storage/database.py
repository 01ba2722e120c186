"""The MongoDB client (PyMongo's native async API) and the errors meaning "database unavailable"."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, ExecutionTimeout, OperationFailure

from fhir_server.settings import Settings

# ShutdownInProgress, PrimarySteppedDown, NotWritablePrimary, InterruptedAtShutdown,
# InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary.
_UNAVAILABLE_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})


def connect(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """A client that fails fast (503) instead of hanging when the database is away."""
    assert settings.mongodb_uri, "PHR_MONGODB_URI must be set once the launcher has run"
    return AsyncMongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=settings.db_timeout_ms,
        connectTimeoutMS=settings.db_timeout_ms,
        # A database that accepts connections but stops answering must not hang requests forever;
        # the bound is generous because a large transaction or $everything can take seconds.
        socketTimeoutMS=max(30_000, settings.db_timeout_ms * 10),
        tz_aware=True,
        appname="phr-server",
    )


def is_unavailable(exc: BaseException) -> bool:
    """True for failures that mean the database cannot be reached right now (answer 503)."""
    if isinstance(exc, (ConnectionFailure, ExecutionTimeout)):
        return True
    if isinstance(exc, OperationFailure):
        return exc.code in _UNAVAILABLE_CODES
    return False
