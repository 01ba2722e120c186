"""A stored resource version and the stamping of `id`/`meta` onto client JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any


def now() -> datetime:
    """The current instant at the database's (millisecond) precision."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def format_instant(t: datetime) -> str:
    """FHIR `instant`: https://hl7.org/fhir/R4/datatypes.html#instant."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp(resource: dict[str, Any], resource_id: str, version: int, at: datetime) -> dict[str, Any]:
    """The client's resource with server-owned `id`, `meta.versionId` and `meta.lastUpdated`."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(at)
    out: dict[str, Any] = {
        "resourceType": resource["resourceType"],
        "id": resource_id,
        "meta": meta,
    }
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class Version:
    """One stored version of a resource; `json` is the exact bytes served (None if deleted)."""

    resource_type: str
    id: str
    version: int
    last_updated: datetime
    method: str
    json: bytes | None
    created: bool = False  # this version created the resource (or re-created it after a delete)
    # its compartment as stored beside it (`pat`), so that a read can be decided without parsing
    # `json`; None where the document has none (history versions, deletes)
    patients: tuple[str, ...] | None = None

    @property
    def deleted(self) -> bool:
        return self.json is None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return format_datetime(self.last_updated.astimezone(UTC), usegmt=True)

    @property
    def key(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version}"
