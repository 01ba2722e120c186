"""Bundles assembled from stored bytes: entries are spliced, never decoded and re-encoded.

https://hl7.org/fhir/R4/bundle.html
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import orjson

from fhir_server.storage.versions import Version, format_instant, now


def entry(full_url: str, resource: bytes | None, extra: dict[str, Any]) -> bytes:
    """One Bundle.entry: `resource` is inserted as stored."""
    parts = [b'{"fullUrl":', orjson.dumps(full_url)]
    if resource is not None:
        parts += [b',"resource":', resource]
    if extra:
        parts += [b",", orjson.dumps(extra)[1:-1]]
    parts.append(b"}")
    return b"".join(parts)


def bundle(
    bundle_type: str, links: list[tuple[str, str]], entries: list[bytes], total: int | None = None
) -> bytes:
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid4()),
        "meta": {"lastUpdated": format_instant(now())},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    return b"".join(
        [orjson.dumps(head)[:-1], b',"entry":[', b",".join(entries), b"]}"]
        if entries
        else [orjson.dumps(head)]
    )


def history_entry(base: str, version: Version) -> bytes:
    """A history entry: the version plus the request that made it."""
    url = f"{version.resource_type}/{version.id}"
    if version.method == "POST":
        request, status = {"method": "POST", "url": version.resource_type}, "201 Created"
    elif version.method == "DELETE":
        request, status = {"method": "DELETE", "url": url}, "204 No Content"
    else:
        request = {"method": version.method, "url": url}
        status = "201 Created" if version.created or version.version == 1 else "200 OK"
    response = {
        "status": status,
        "etag": version.etag,
        "lastModified": format_instant(version.last_updated),
    }
    return entry(f"{base}/{url}", version.json, {"request": request, "response": response})
