"""Files to load, turned into the Bundles the loader posts (pure: no I/O but reading the file).

Idempotency rules (docs/loading.md):

- a `POST` entry whose resource has an `id` becomes `PUT Type/id` (its `fullUrl` is kept, so the
  server still rewrites references to it: a PUT entry maps its fullUrl to `Type/id` too);
- a `POST` entry without an `id` but with an identifier gets `ifNoneExist` on its first identifier
  that has both a system and a value (unless it already has an `ifNoneExist`);
- transaction Bundles are posted whole; batch Bundles, collection Bundles and NDJSON files are
  posted in Bundles of at most `batch_size` entries (batch stays batch, the others become
  transactions).
  Where entries are split, references to the fullUrl of an entry with an id are rewritten to
  `Type/id` here, since the entry they point to may travel in another Bundle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

LOADABLE_BUNDLES = ("transaction", "batch", "collection")
SUFFIXES = (".json", ".ndjson")
# Synthea writes the resources that patient bundles point at (with conditional references) into
# these files: they are loaded first, before any patient bundle.
SHARED_FIRST = ("hospitalInformation", "practitionerInformation")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


# -- JSON that keeps decimals as written ("1.50" stays "1.50", as the server stores it) ----------


def _parse_int(text: str) -> int | Decimal:
    value = int(text)
    return value if -(2**63) <= value < 2**63 else Decimal(text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: bytes | str) -> Any:
    """JSON with decimals parsed as `Decimal` (raises ValueError on invalid JSON)."""
    return json.loads(
        data, parse_float=Decimal, parse_int=_parse_int, parse_constant=_reject_constant
    )


def _default(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


class SourceError(Exception):
    """The file cannot be loaded at all (unreadable, not JSON, not a loadable Bundle)."""


@dataclass(frozen=True)
class Problem:
    """Something wrong with one entry or line; `where` says which."""

    where: str
    message: str
    resource_type: str = "-"


@dataclass
class Chunk:
    """One Bundle to post: `entries` as sent, `where` each came from (for reports), and `part`,
    which entries of the file these are when the file is sent in several Bundles ("" if whole)."""

    kind: str  # "transaction" or "batch"
    entries: list[dict[str, Any]]
    where: list[str]
    part: str = ""

    def body(self) -> bytes:
        return dump_json({"resourceType": "Bundle", "type": self.kind, "entry": self.entries})


@dataclass
class Prepared:
    path: Path
    kind: str  # the file's Bundle.type, or "ndjson"
    chunks: list[Chunk] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)  # unresolved urn references


# -- finding files -------------------------------------------------------------------------------


def discover(paths: list[Path]) -> list[Path]:
    """Files named on the command line, and `.json`/`.ndjson` files under named directories (hidden
    files and directories skipped), in a stable order with Synthea's shared-resource files first."""
    found: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            candidates = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists():
            candidates = [path]
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return sorted(found, key=lambda p: not is_shared_first(p))  # stable: keeps the order otherwise


def is_shared_first(path: Path) -> bool:
    return path.name.startswith(SHARED_FIRST)


# -- entries -------------------------------------------------------------------------------------


def entry_type(entry: dict[str, Any]) -> str:
    resource = entry.get("resource")
    if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
        return str(resource["resourceType"])
    request = entry.get("request")
    if isinstance(request, dict) and isinstance(request.get("url"), str):
        return request["url"].split("?")[0].strip("/").split("/")[0] or "-"
    return "-"


def identifier_criteria(resource: dict[str, Any]) -> str | None:
    """`identifier=system|value` for the first identifier with both (URL-encoded for the query)."""
    for ident in resource.get("identifier") or []:
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), ident.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            return f"identifier={quote(system, safe=':/')}|{quote(value, safe=':/')}"
    return None


def idempotent(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry rewritten so that posting it twice changes nothing the second time."""
    request, resource = entry.get("request"), entry.get("resource")
    if not isinstance(request, dict) or not isinstance(resource, dict):
        return entry
    rtype = resource.get("resourceType")
    url = request.get("url")
    if request.get("method") != "POST" or not isinstance(url, str) or url.strip("/") != rtype:
        return entry
    rid = resource.get("id")
    if isinstance(rid, str) and _ID.fullmatch(rid):
        return {**entry, "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}
    if not request.get("ifNoneExist") and (criteria := identifier_criteria(resource)):
        return {**entry, "request": {**request, "ifNoneExist": criteria}}
    return entry


def rewrite(value: Any, mapping: dict[str, str]) -> Any:
    """Replace every string equal to a mapped fullUrl, as the server does in a transaction."""
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, list):
        return [rewrite(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: rewrite(v, mapping) for k, v in value.items()}
    return value


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)


def _id_mapping(entries: list[dict[str, Any]]) -> dict[str, str]:
    """fullUrl -> Type/id for the entries that will be written at a known id."""
    mapping: dict[str, str] = {}
    for entry in entries:
        request, full_url = entry.get("request") or {}, entry.get("fullUrl")
        if isinstance(full_url, str) and request.get("method") == "PUT":
            url = request.get("url")
            if isinstance(url, str) and "?" not in url and url.count("/") == 1:
                mapping[full_url] = url
    return mapping


def references(value: Any) -> Iterator[str]:
    """Every Reference.reference in a resource."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def _unresolved(resource: Any, full_urls: set[str]) -> list[str]:
    return sorted({r for r in references(resource) if r.startswith("urn:") and r not in full_urls})


# -- files ---------------------------------------------------------------------------------------


def prepare(path: Path, batch_size: int) -> Prepared:
    """Read one file and plan the Bundles that load it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read the file: {exc.strerror or exc}") from None
    if path.suffix == ".ndjson":
        return _prepare_ndjson(path, data, batch_size)
    try:
        bundle = parse_json(data)
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"not JSON: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        kind = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise SourceError(f"not a Bundle (resourceType {kind!r})")
    kind = bundle.get("type")
    if kind not in LOADABLE_BUNDLES:
        raise SourceError(
            f"Bundle.type {kind!r} cannot be loaded (use {', '.join(LOADABLE_BUNDLES)})"
        )
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise SourceError("Bundle.entry is not an array")
    prepared = Prepared(path, kind)
    entries: list[dict[str, Any]] = []
    where: list[str] = []
    for index, entry in enumerate(raw):
        label = f"entry[{index}]"
        if not isinstance(entry, dict):
            prepared.problems.append(Problem(label, "the entry is not an object"))
            continue
        if kind == "collection":
            resource = entry.get("resource")
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                prepared.problems.append(Problem(label, "the entry has no resource"))
                continue
            entry = {"request": {"method": "POST", "url": resource["resourceType"]}, **entry}
            entry = {k: v for k, v in entry.items() if k in {"fullUrl", "resource", "request"}}
        entries.append(idempotent(entry))
        where.append(label)
    full_urls = {e["fullUrl"] for e in entries if isinstance(e.get("fullUrl"), str)}
    for entry, label in zip(entries, where, strict=True):
        for ref in _unresolved(entry.get("resource"), full_urls):
            prepared.references.append((label, ref))
    if kind == "transaction":
        if entries:
            prepared.chunks.append(Chunk("transaction", entries, where))
        return prepared
    mapping = _id_mapping(entries)
    entries = [
        {**e, "resource": rewrite(e["resource"], mapping)} if "resource" in e else e
        for e in entries
    ]
    size = batch_size
    if kind == "collection" and len(entries) > batch_size:
        # entries written at a server-assigned id can only be referenced inside one transaction
        pending = full_urls - set(mapping)
        if pending and any(s in pending for e in entries for s in strings(e.get("resource"))):
            size = len(entries)
    _split(prepared, "batch" if kind == "batch" else "transaction", entries, where, size)
    return prepared


def _split(
    prepared: Prepared, kind: str, entries: list[dict[str, Any]], where: list[str], size: int
) -> None:
    for start in range(0, len(entries), size):
        part, labels = entries[start : start + size], where[start : start + size]
        label = "" if len(entries) <= size else f"[{labels[0]}..{labels[-1]}]"
        prepared.chunks.append(Chunk(kind, part, labels, label))


def _prepare_ndjson(path: Path, data: bytes, batch_size: int) -> Prepared:
    prepared = Prepared(path, "ndjson")
    entries: list[dict[str, Any]] = []
    where: list[str] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        label = f"line {number}"
        try:
            resource = parse_json(line)
        except (ValueError, RecursionError) as exc:
            prepared.problems.append(Problem(label, f"not JSON: {exc}"))
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            prepared.problems.append(Problem(label, "not a FHIR resource (no resourceType)"))
            continue
        rtype = resource["resourceType"]
        if rtype == "Bundle" and resource.get("type") in {"transaction", "batch"}:
            prepared.problems.append(
                Problem(
                    label, "a transaction/batch Bundle in NDJSON: save it as a .json file", rtype
                )
            )
            continue
        entries.append(
            idempotent({"resource": resource, "request": {"method": "POST", "url": rtype}})
        )
        where.append(label)
    _split(prepared, "transaction", entries, where, batch_size)
    return prepared


__all__ = [
    "LOADABLE_BUNDLES",
    "Chunk",
    "Prepared",
    "Problem",
    "SourceError",
    "discover",
    "entry_type",
    "idempotent",
    "identifier_criteria",
    "prepare",
]
