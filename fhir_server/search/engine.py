"""Running a search: drive one index range, test every candidate exactly, sort, page, include.

https://hl7.org/fhir/R4/search.html. Two reads per page: candidates with their keys only
(`k`, `o`, `lu`), then the stored bytes of the page's resources by `_id`.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.compartment import compartment_query
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.jsonbody import loads
from fhir_server.search.definitions import search_params
from fhir_server.search.index import (
    KEY_FIELD,
    LAST_UPDATED,
    SortValues,
    confined_ranges,
    document_keys,
    indexed_params,
    is_reference,
    last_updated_range,
    logical_keys,
    stored_ranges,
)
from fhir_server.search.query import (
    RANK_EXACT,
    RESULT_PARAMS,
    KeyRange,
    ParsedSearch,
    Predicate,
    id_predicate,
    predicate,
    reference_targets,
    unknown,
)
from fhir_server.search.values import VALUE

_CANDIDATE_FIELDS = {"k": 1, "lu": 1, "m": 1, "pat": 1}
SUMMARY_VALUES = frozenset({"true", "false", "text", "data", "count"})
TOTAL_VALUES = frozenset({"none", "estimate", "accurate"})


@dataclass
class Chain:
    """`ref.param=value` / `ref:Type.param=value` (one level) or `_has:Type:ref:param=value`."""

    kind: str  # "chain" | "has"
    param: str  # the reference parameter (on the outer type for chain, inner for _has)
    target: str  # the other resource type
    inner: str  # inner parameter name (with modifier)
    value: str


@dataclass
class Search:
    resource_type: str
    predicates: list[Predicate] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)
    result: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[Issue] = field(default_factory=list)
    patient: str | None = None  # compartment the search is confined to
    scope: Predicate | None = None  # the parameter that named that patient


@dataclass
class Candidate:
    id: str
    keys: frozenset[str]
    order: SortValues
    last_updated: Any
    json: bytes | None = None  # the stored bytes, when the candidate query already read them


@dataclass
class Page:
    matches: int
    ids: list[str]
    next_cursor: str | None
    previous_cursor: str | None


def parse(resource_type: str, params: Iterable[tuple[str, str]], base: str, strict: bool) -> Search:
    """Turn query parameters into predicates; unknown ones are warnings, or 400 when strict."""
    search = Search(resource_type)
    known = {p.code: p for p in indexed_params(resource_type)}
    for name, raw in params:
        if name in RESULT_PARAMS:
            search.result.setdefault(name, []).append(raw)
            continue
        if raw == "":
            unknown(name, False, search.ignored, "Empty search value")
            continue
        if name == "_id":
            search.predicates.append(id_predicate(raw))
            continue
        if name.startswith("_has:"):
            parts = name.split(":")
            if len(parts) != 4 or not all(parts[1:]):
                raise bad_request(f"{name} is not of the form _has:Type:reference:parameter")
            search.chains.append(Chain("has", parts[2], parts[1], parts[3], raw))
            continue
        base_name, _, chained = name.partition(".")
        code, _, modifier = base_name.partition(":")
        if chained:
            param = known.get(code)
            if param is None or param.type != "reference":
                unknown(name, strict, search.ignored, "Not a reference parameter to chain")
                continue
            targets = [modifier] if modifier else list(param.targets)
            if len(targets) != 1:
                raise bad_request(f"{name}: say which type to chain through, e.g. {code}:Patient")
            search.chains.append(Chain("chain", code, targets[0], chained, raw))
            continue
        param = known.get(code)
        if param is None:
            why = (
                "Parameter type not supported"
                if code in search_params(resource_type)
                else f"Unknown search parameter for {resource_type}"
            )
            unknown(name, strict, search.ignored, why)
            continue
        search.predicates.append(predicate(param, modifier, raw, base))
    return search


def _sort_spec(search: Search) -> list[tuple[str, bool]]:
    """(parameter code or "_lastUpdated"/"_id", descending) pairs from `_sort`."""
    specs: list[tuple[str, bool]] = []
    known = {p.code for p in indexed_params(search.resource_type)} | {"_id"}
    for raw in search.result.get("_sort", []):
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            descending = item.startswith("-")
            code = item.lstrip("-")
            if code not in known:
                raise bad_request(f"Cannot sort {search.resource_type} by {code!r}")
            specs.append((code, descending))
    return specs or [("_lastUpdated", True)]


def _read_codes(search: Search) -> list[str]:
    """Parameters whose keys a search reads from its matches: `_sort` and `_include` ones."""
    codes = [
        item.strip().lstrip("-")
        for raw in search.result.get("_sort", [])
        for item in raw.split(",")
    ]
    return codes + [v.split(":")[1] for v in search.result.get("_include", []) if ":" in v]


def _sort_value(candidate: Candidate, code: str) -> Any:
    if code == "_id":
        return candidate.id
    if code == "_lastUpdated":
        return candidate.last_updated.isoformat()
    return candidate.order.get(code)


def _row(candidate: Candidate, spec: list[tuple[str, bool]]) -> tuple[list[Any], str]:
    return [_sort_value(candidate, code) for code, _ in spec], candidate.id


def _comparator(spec: list[tuple[str, bool]]) -> Any:
    """Sort key over rows `(values, id)`: `_sort` order, missing values last, then id."""

    def compare(a: tuple[list[Any], str], b: tuple[list[Any], str]) -> int:
        for (x, y), (_, descending) in zip(zip(a[0], b[0], strict=True), spec, strict=True):
            if x == y:
                continue
            if x is None or y is None:
                return 1 if x is None else -1
            result = -1 if x < y else 1
            return -result if descending else result
        return (a[1] > b[1]) - (a[1] < b[1])

    return functools.cmp_to_key(compare)


def _encode_cursor(candidate: Candidate, spec: list[tuple[str, bool]], direction: str) -> str:
    values, cid = _row(candidate, spec)
    payload = [direction, cid, values]
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str, list[Any]]:
    try:
        direction, last_id, values = orjson.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
        assert direction in {"n", "p"} and isinstance(last_id, str) and isinstance(values, list)
    except (ValueError, AssertionError, TypeError, orjson.JSONDecodeError):
        raise bad_request("_page is not a cursor this server issued") from None
    return direction, last_id, values


class Executor:
    """Runs parsed searches against one database."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], base: str, max_candidates: int) -> None:
        self.db = db
        self.base = base
        self.max_candidates = max_candidates

    async def _find(
        self, resource_type: str, query: dict[str, Any], with_json: bool = False
    ) -> list[dict[str, Any]]:
        limit = self.max_candidates + 1
        fields = {**_CANDIDATE_FIELDS, "json": 1} if with_json else _CANDIDATE_FIELDS
        cursor = self.db[resource_type].find(query, fields)
        if not query:  # a whole-type listing walks the lastUpdated index, never the collection
            cursor = cursor.sort([("lu", -1), ("_id", -1)])
        docs = await cursor.to_list(limit)
        if len(docs) > self.max_candidates:
            raise FhirError(
                f"The search matches more than {self.max_candidates} candidates; narrow it",
                400,
                "too-costly",
            )
        return docs

    async def _drive(self, search: Search) -> list[dict[str, Any]]:
        """Candidates from the most selective index range (patient-prefixed when confined)."""
        drivable = [p for p in search.predicates if p.drivable()]
        with_json = any(p.resource_test for p in search.predicates)
        if not drivable:
            if search.patient:
                return await self._compartment(search, with_json)
            if search.predicates:
                raise FhirError(
                    "This search needs at least one parameter that can use an index",
                    400,
                    "too-costly",
                )
            return await self._find(search.resource_type, {}, with_json)
        rtype = search.resource_type
        if search.patient:
            # Not every key has a patient-prefixed copy (index.stored_fields). An exact reference
            # key is selective without one; any other key would read every patient's matches,
            # so without a usable driver the compartment itself is read.
            drivable = [
                p
                for p in drivable
                if p.ids is not None
                or _prefixed(rtype, p)
                or (p.rank >= RANK_EXACT and is_reference(rtype, p.name))
            ]
            if not drivable:
                return await self._compartment(search, with_json)
            if len(drivable) > 1:
                # The compartment is already in every patient-prefixed key: let another parameter
                # drive, so `patient=P&code=X` reads P's X keys, not all of P's resources.
                drivable = [p for p in drivable if p is not search.scope] or drivable
        driver = max(
            drivable,
            key=lambda p: (
                p.ids is not None,
                p.rank,
                bool(search.patient) and _prefixed(rtype, p),
                p.kind == "date",
            ),
        )
        # A selective driver (ids, exact keys) yields few candidates: read their bytes in the same
        # query rather than in a second round trip for the page.
        with_json = with_json or driver.ids is not None or driver.rank >= RANK_EXACT
        if driver.ids is not None:
            docs_by_id = await self._find(rtype, {"_id": {"$in": driver.ids}}, with_json)
            return self._confined(search, docs_by_id)
        assert driver.ranges is not None
        prefixed = bool(search.patient) and _prefixed(rtype, driver)
        docs: dict[str, dict[str, Any]] = {}
        for logical_low, logical_high in driver.ranges:
            queries = _queries(
                rtype, driver.name, logical_low, logical_high, search.patient if prefixed else None
            )
            for query in queries:
                for doc in await self._find(rtype, query, with_json):
                    docs[doc["_id"]] = doc
                if len(docs) > self.max_candidates:
                    raise FhirError(
                        "The search matches too many candidates; narrow it", 400, "too-costly"
                    )
        return list(docs.values()) if prefixed else self._confined(search, list(docs.values()))

    async def _compartment(self, search: Search, with_json: bool) -> list[dict[str, Any]]:
        """Candidates: the resources of the searched type in the search's patient's
        compartment."""
        assert search.patient is not None
        query = compartment_query(search.resource_type, search.patient)
        if query is None:
            return []
        return self._confined(search, await self._find(search.resource_type, query, with_json))

    @staticmethod
    def _confined(search: Search, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Candidates read without the patient prefix, kept to the search's compartment."""
        if not search.patient:
            return docs
        return [d for d in docs if search.patient in (d.get("pat") or ())]

    async def resolve_chains(self, search: Search) -> None:
        """Replace chained and `_has` parameters by reference / `_id` predicates."""
        for chain in search.chains:
            inner = parse(chain.target, [(chain.inner, chain.value)], self.base, strict=True)
            inner.patient = search.patient if chain.kind == "has" else None
            matched = await self.matching(inner, (chain.param,))
            if chain.kind == "chain":
                param = {p.code: p for p in indexed_params(search.resource_type)}[chain.param]
                values = ",".join(f"{chain.target}/{c.id}" for c in matched) or "\x00none"
                search.predicates.append(predicate(param, "", values, self.base))
                continue
            code = chain.param
            prefix = f"{code}{VALUE}{search.resource_type}/"
            ids = sorted(
                {k[len(prefix) :] for c in matched for k in c.keys if k.startswith(prefix)}
            )
            ref = {p.code: p for p in indexed_params(chain.target)}.get(code)
            if ref is None or ref.type != "reference":
                raise bad_request(f"_has: {code} is not a reference parameter of {chain.target}")
            search.predicates.append(
                Predicate("_has", None, lambda keys: True, 4, ids=ids or ["\x00none"])
            )
        search.chains.clear()

    async def matching(self, search: Search, read: tuple[str, ...] = ()) -> list[Candidate]:
        """Every resource that satisfies all predicates (unsorted); `read`: parameters whose keys
        the caller reads from the candidates."""
        await self.resolve_chains(search)
        # Candidates' keys are made whole for the parameters the search tests or sorts by (a
        # multi-scope filter may test any); `_lastUpdated` keys come from `lu`.
        names = {p.name for p in search.predicates} | set(read) | set(_read_codes(search))
        codes = None if "_scope" in names else frozenset(names)
        by_lu = codes is None or LAST_UPDATED in codes
        out = []
        for doc in await self._drive(search):
            if doc.get("m") == "DELETE":
                continue
            keys = logical_keys(
                search.resource_type, document_keys(doc), doc["lu"] if by_lu else None, codes
            )
            if not all(p.test(keys) for p in search.predicates) or not all(
                doc["_id"] in p.ids for p in search.predicates if p.ids is not None
            ):
                continue
            checks = [p.resource_test for p in search.predicates if p.resource_test]
            if checks and not all(check(loads(doc["json"])) for check in checks):
                continue
            order = SortValues(search.resource_type, keys)
            out.append(Candidate(doc["_id"], keys, order, doc["lu"], doc.get("json")))
        return out

    async def page(self, search: Search, count: int) -> tuple[Page, list[Candidate]]:
        """One page in `_sort` order; `_page` cursors name the row a page starts after (next)
        or ends before (previous), so pages stay consistent while data changes."""
        matches = await self.matching(search)
        spec = _sort_spec(search)
        key = _comparator(spec)
        matches.sort(key=lambda c: key(_row(c, spec)))
        start = 0
        cursor = search.result["_page"][-1] if search.result.get("_page") else None
        if cursor:
            direction, last_id, values = _decode_cursor(cursor)
            if len(values) != len(spec):
                raise bad_request("_page does not belong to this search")
            probe = key((values, last_id))
            before = sum(1 for c in matches if key(_row(c, spec)) < probe)
            at = before + (1 if any(c.id == last_id for c in matches) else 0)
            start = at if direction == "n" else max(0, before - count)
            if direction == "p":
                count = min(count, before)
        page = matches[start : start + count]
        next_cursor = (
            _encode_cursor(page[-1], spec, "n") if page and start + count < len(matches) else None
        )
        previous_cursor = _encode_cursor(page[0], spec, "p") if page and start > 0 else None
        return Page(len(matches), [c.id for c in page], next_cursor, previous_cursor), page

    async def bodies(self, resource_type: str, page: list[Candidate]) -> list[bytes]:
        """The page's stored bytes, read now unless the candidate query already did."""
        if all(c.json is not None for c in page):
            return [c.json for c in page if c.json is not None]
        return await self.fetch(resource_type, [c.id for c in page])

    async def fetch(self, resource_type: str, ids: list[str]) -> list[bytes]:
        """Stored bytes of live resources, in the order of `ids`."""
        if not ids:
            return []
        docs = await self.db[resource_type].find({"_id": {"$in": ids}}, {"json": 1}).to_list(None)
        found = {d["_id"]: d["json"] for d in docs if d.get("json") is not None}
        return [found[i] for i in ids if i in found]

    async def includes(self, search: Search, page: list[Candidate]) -> list[tuple[str, str, bytes]]:
        """(type, id, bytes) of `_include` and `_revinclude` targets (`:iterate` one more level)."""
        found: dict[tuple[str, str], bytes] = {}
        current: list[tuple[str, Candidate]] = [(search.resource_type, c) for c in page]
        seen = {(search.resource_type, c.id) for c in page}
        for level in range(2):
            wanted = [
                (name, value)
                for name in ("_include", "_revinclude")
                for value in search.result.get(name, [])
                if level == 0 or value.endswith(":iterate")
            ]
            if not wanted or not current:
                break
            added: list[tuple[str, Candidate]] = []
            for name, value in wanted:
                spec = value.removesuffix(":iterate").split(":")
                if len(spec) not in (2, 3):
                    raise bad_request(f"{name}={value} is not Type:parameter[:targetType]")
                source, code = spec[0], spec[1]
                target = spec[2] if len(spec) == 3 else None
                if name == "_include":
                    refs = self._refs(current, source, code, target)
                    for rtype, rid in refs:
                        if (rtype, rid) not in seen:
                            seen.add((rtype, rid))
                            added += await self._load(rtype, [rid])
                else:
                    added += await self._revinclude(current, source, code, seen)
            for rtype, cand in added:
                found[(rtype, cand.id)] = b""
            current = added
        out = []
        by_type: dict[str, list[str]] = {}
        for rtype, rid in found:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            for rid, body in zip(ids, await self.fetch(rtype, ids), strict=False):
                out.append((rtype, rid, body))
        return out

    def _refs(
        self, current: list[tuple[str, Candidate]], source: str, code: str, target: str | None
    ) -> list[tuple[str, str]]:
        param = {p.code: p for p in indexed_params(source)}.get(code) if source else None
        if param is None or param.type != "reference":
            raise bad_request(f"_include: {source}:{code} is not a reference parameter")
        prefix = f"{code}{VALUE}"
        refs = []
        for rtype, cand in current:
            if rtype != source:
                continue
            for key in cand.keys:
                if key.startswith(prefix) and "/" in key[len(prefix) :]:
                    ref_type, _, ref_id = key[len(prefix) :].rpartition("/")
                    if "/" in ref_type or ":" in ref_type:
                        continue  # absolute URLs point elsewhere
                    if target is None or ref_type == target:
                        refs.append((ref_type, ref_id))
        return refs

    async def _load(self, resource_type: str, ids: list[str]) -> list[tuple[str, Candidate]]:
        docs = (
            await self.db[resource_type]
            .find({"_id": {"$in": ids}}, _CANDIDATE_FIELDS)
            .to_list(None)
        )
        return [
            (
                resource_type,
                _candidate(resource_type, d),
            )
            for d in docs
            if d.get("m") != "DELETE"
        ]

    async def _revinclude(
        self,
        current: list[tuple[str, Candidate]],
        source: str,
        code: str,
        seen: set[tuple[str, str]],
    ) -> list[tuple[str, Candidate]]:
        param = {p.code: p for p in indexed_params(source)}.get(code)
        if param is None or param.type != "reference":
            raise bad_request(f"_revinclude: {source}:{code} is not a reference parameter")
        keys = [
            key
            for rtype, c in current
            for key, _ in stored_ranges(source, f"{code}{VALUE}{rtype}/{c.id}", None)
        ]
        if not keys:
            return []
        docs = await self._find(source, {KEY_FIELD: {"$in": keys}})
        out = []
        for d in docs:
            if d.get("m") == "DELETE" or (source, d["_id"]) in seen:
                continue
            seen.add((source, d["_id"]))
            out.append((source, _candidate(source, d)))
        return out


def _queries(
    resource_type: str, code: str, low: str, high: str | None, patient: str | None
) -> list[dict[str, Any]]:
    """The database queries reading a logical key range (index.stored_ranges), confined to
    `patient`'s copies of the keys when one is given (index.confined_ranges)."""
    if code == LAST_UPDATED:  # not stored as keys: the `lu` field and its index
        condition = last_updated_range(low, high)
        return [{"lu": condition} if condition else {}]
    ranges = (
        stored_ranges(resource_type, low, high)
        if patient is None
        else confined_ranges(resource_type, low, high, patient)
    )
    assert ranges is not None, (low, high)
    return [
        {KEY_FIELD: lo} if hi is None else {KEY_FIELD: {"$gte": lo, "$lt": hi}} for lo, hi in ranges
    ]


def _prefixed(resource_type: str, predicate: Predicate) -> bool:
    """True when every key range of the predicate has copies for each patient."""
    return bool(predicate.ranges) and all(
        confined_ranges(resource_type, low, high, "") is not None
        for low, high in predicate.ranges or ()
    )


def _candidate(resource_type: str, doc: dict[str, Any]) -> Candidate:
    keys = logical_keys(resource_type, document_keys(doc))
    return Candidate(doc["_id"], keys, SortValues(resource_type, keys), doc["lu"])


__all__ = [
    "SUMMARY_VALUES",
    "TOTAL_VALUES",
    "Executor",
    "KeyRange",
    "ParsedSearch",
    "Search",
    "parse",
    "reference_targets",
]


def confine(search: Search, about: list[str]) -> None:
    """Confine a search to one patient's compartment when a compartment parameter names exactly
    one Patient (`patient=123`), so other parameters drive patient-prefixed index keys."""
    if not about:
        return  # the type has no patient compartment, so its keys carry no patient prefix
    names = {*about, "patient"}  # `patient` is the compartment's own parameter wherever defined
    for pred in search.predicates:
        if pred.name in names and pred.ranges and len(pred.ranges) == 1:
            low, high = pred.ranges[0]
            prefix = f"{pred.name}{VALUE}Patient/"
            if high is None and low.startswith(prefix):
                search.patient = low[len(prefix) :]
                search.scope = pred
                return
