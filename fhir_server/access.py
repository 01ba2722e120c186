"""Enforcement: every FHIR request's bearer token becomes an `Access`, and every data path asks it.

The decision itself is `consent.policy.decide` (pure; ARCHITECTURE.md item 6). This module only
gathers its inputs: the token's claims, the Consents that let a RelatedPerson act for a patient,
and facts about each resource (compartment, security labels, search keys for granular scopes).

Searches are narrowed before they run (to the token's patient, and to the filters of granular
scopes), so paging and totals are right; then every resource returned - matches, includes,
history versions, `$everything` entries, bundle entries - is checked again. Outside permission a
read is 404, exactly as for a missing resource; a write or an explicit search for another patient
is 403 (ARCHITECTURE.md item 11).

RFC 6750 (bearer tokens): https://www.rfc-editor.org/rfc/rfc6750
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from starlette.requests import Request

from consent.compartment import about_params
from consent.decision import Decision
from consent.delegation import in_period
from consent.policy import AccessContext, Delegation, Target, decide
from consent.scopes import ResourceScope
from fhir_server.compartment import compartment_patients
from fhir_server.errors import FhirError, not_found
from fhir_server.jsonbody import loads
from fhir_server.search.definitions import compartment_params
from fhir_server.search.engine import Executor, Search, parse
from fhir_server.search.index import index_fields
from fhir_server.search.query import Predicate
from fhir_server.search.values import PATIENT, VALUE
from smart_auth.tokens import AccessToken

CONTEXTS = ("system", "patient", "user")


def forbidden(diagnostics: str) -> FhirError:
    return FhirError(diagnostics, 403, "forbidden")


def insufficient_scope(diagnostics: str) -> FhirError:
    challenge = 'Bearer realm="fhir", error="insufficient_scope"'
    return FhirError(diagnostics, 403, "forbidden", headers={"WWW-Authenticate": challenge})


def _no_scope(letter: str, resource_type: str) -> FhirError:
    return insufficient_scope(f"The token's scopes do not allow '{letter}' on {resource_type}")


@cache
def has_compartment(resource_type: str) -> bool:
    """Resources of this type can be about a patient (shared types like Practitioner cannot).
    A Binary is, through its `securityContext` (it holds documents and images)."""
    if resource_type in {"Patient", "Binary"}:
        return True
    return bool(about_params(resource_type, compartment_params().get(resource_type, [])))


def _patients(resource_type: str, resource: dict[str, Any], base: str) -> list[str]:
    if resource_type == "Binary":
        # Only a direct `Patient/x` context is followed: a Binary guarded by another resource
        # (a DocumentReference) is outside every patient's reach, so only system scopes see it.
        ref = (resource.get("securityContext") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/") and "/" not in ref[8:]:
            return [ref[8:]]
        return []
    if not has_compartment(resource_type):
        return []
    return compartment_patients(resource_type, resource, base)


def _labels(resource: dict[str, Any]) -> frozenset[str]:
    security = (resource.get("meta") or {}).get("security") or []
    return frozenset(
        c["code"] for c in security if isinstance(c, dict) and isinstance(c.get("code"), str)
    )


@dataclass(frozen=True)
class Reach:
    """Whom a search may cover: every patient (`patients` None) or the listed ones; and the
    granular scopes whose filters results must match (empty: unfiltered)."""

    patients: frozenset[str] | None
    filters: tuple[ResourceScope, ...]


class Access:
    """The caller's permissions for one request, asked on every data path."""

    def __init__(self, ctx: AccessContext, base: str, token: AccessToken | None = None) -> None:
        self.ctx = ctx
        self.base = base
        self.token = token
        self.now = datetime.now(UTC)
        # every patient this request concerned, for its audit record
        self.patients: set[str] = {ctx.patient} if ctx.patient else set()

    # -- the decision -------------------------------------------------------------------------

    def sees_all(self, resource_type: str, letter: str) -> bool:
        """An unfiltered system scope covers it: no per-resource facts are needed."""
        return self._unfiltered_system(resource_type, letter)

    def _unfiltered_system(self, resource_type: str, letter: str) -> bool:
        return any(
            s.covers("system", resource_type, letter) and not s.query
            for s in self.ctx.scopes.resources
        )

    def decide(
        self,
        letter: str,
        resource_type: str,
        body: bytes | dict[str, Any],
        stored: Sequence[str] | None = None,
    ) -> Decision:
        """`consent.policy.decide` for one resource (its JSON bytes or the parsed object).

        `stored` is its compartment as stored beside it (`pat`, computed by the same
        `compartment_patients` at write time, and what searches are confined by): with it the
        bytes are parsed only when the decision needs their content, namely a delegate's security
        labels, a granular scope's filter, or a Binary (its patient is its `securityContext`)."""

        def resource() -> dict[str, Any]:
            nonlocal body
            if isinstance(body, bytes):
                body = loads(body)  # once, and only if needed
            assert isinstance(body, dict)
            return body

        if stored is None or resource_type == "Binary":
            patients: Sequence[str] = _patients(resource_type, resource(), self.base)
        else:
            patients = stored
        self.patients.update(patients)
        target = Target(
            resource_type,
            frozenset(patients),
            has_compartment(resource_type),
            _labels(resource()) if self.ctx.delegations else frozenset(),
        )
        keys: frozenset[str] | None = None

        def matches(scope: ResourceScope) -> bool:
            nonlocal keys
            if keys is None:
                fields = index_fields(resource_type, resource(), [], self.base)
                keys = frozenset(k for k in fields.get("k", ()) if PATIENT not in k)
            return _scope_matches(scope, resource_type, self.base, keys, resource())

        return decide(self.ctx, letter, target, self.now, matches)

    def allows(
        self,
        letter: str,
        resource_type: str,
        body: bytes | dict[str, Any],
        stored: Sequence[str] | None = None,
    ) -> bool:
        if self._unfiltered_system(resource_type, letter):
            self.patients.update(stored or ())  # named in the audit record when known unparsed
            return True  # the hot path of backend services: no parse needed
        return self.decide(letter, resource_type, body, stored).permitted

    def check_read(
        self,
        letter: str,
        resource_type: str,
        resource_id: str,
        body: bytes,
        stored: Sequence[str] | None = None,
    ) -> None:
        """Reads outside permission are 404, the same answer as for a missing resource."""
        if not self.allows(letter, resource_type, body, stored):
            raise not_found(f"{resource_type}/{resource_id} is not known")

    def check_write(self, letter: str, resource_type: str, body: bytes | dict[str, Any]) -> None:
        """Writes outside permission are 403; a write to something the caller may not even see
        (the current version) is 404, so a write cannot probe for existence."""
        if self._unfiltered_system(resource_type, letter):
            return
        if not any(
            s.covers(context, resource_type, letter)
            for s in self.ctx.scopes.resources
            for context in CONTEXTS
        ):
            raise _no_scope(letter, resource_type)
        resource = loads(body) if isinstance(body, bytes) else body
        decision = self.decide(letter, resource_type, resource)
        if not decision.permitted:
            raise forbidden(f"Not permitted: {decision.reason}")

    def check_existing(self, letter: str, resource_type: str, body: bytes) -> None:
        """A write (`letter`) to an existing version: 404 if the caller may not read it."""
        if self._unfiltered_system(resource_type, letter):
            return
        resource = loads(body)
        if not self.decide("r", resource_type, resource).permitted:
            raise not_found(f"{resource_type}/{resource.get('id')} is not known")
        self.check_write(letter, resource_type, resource)

    # -- searches -----------------------------------------------------------------------------

    def reach(self, resource_type: str, letter: str) -> Reach:
        """What a search of `resource_type` may cover, in the order `decide` tries scopes."""
        scopes = self.ctx.scopes.resources
        for context in CONTEXTS:
            covering = tuple(s for s in scopes if s.covers(context, resource_type, letter))
            if not covering:
                continue
            filters = () if any(not s.query for s in covering) else covering
            if context == "system":
                return Reach(None, filters)
            patients = self._context_patients(context)
            if patients is None:
                continue
            return Reach(patients, filters)
        raise _no_scope(letter, resource_type)

    def _context_patients(self, context: str) -> frozenset[str] | None:
        if context == "patient":
            return frozenset({self.ctx.patient}) if self.ctx.patient else None
        user = self.ctx.fhir_user or ""
        if user.startswith("Patient/"):
            return frozenset({user.removeprefix("Patient/")})
        if user.startswith("RelatedPerson/"):
            return frozenset(self.ctx.delegations)
        return None

    def restrict(self, search: Search, letter: str = "s") -> None:
        """Narrow a parsed search to what the token may see; 403 for another patient's data."""
        reach = self.reach(search.resource_type, letter)
        if reach.filters:
            _add_filters(search, reach.filters, self.base)
        if reach.patients is None or not has_compartment(search.resource_type):
            return
        named = _named_patients(search)
        self.patients |= named
        if named - reach.patients:
            raise forbidden("The search names a patient this token may not see")
        if search.resource_type == "Patient":
            search.predicates.append(Predicate("_id", None, _always, 4, ids=sorted(reach.patients)))
            self.patients |= reach.patients
            return
        if search.patient is not None:
            return  # confined to a patient it named, one the token reaches
        if len(reach.patients) != 1:
            raise forbidden("Name the patient to search (patient=<id>): the token reaches several")
        (search.patient,) = reach.patients
        self.patients.add(search.patient)

    def visible(self, letter: str, resource_type: str, body: bytes) -> bool:
        return self.allows(letter, resource_type, body)


def _named_patients(search: Search) -> set[str]:
    """Patients a search names explicitly, in any reference spelling (ids, `Patient/x`, absolute,
    versioned: the parser makes them one key) and whether OR-ed (`a,b`) or AND-ed (repeated)."""
    rtype = search.resource_type
    if rtype == "Patient":
        return {i for p in search.predicates if p.name == "_id" for i in p.ids or ()}
    names = {*about_params(rtype, compartment_params().get(rtype, [])), "patient"}
    found: set[str] = set()
    for pred in search.predicates:
        if pred.name not in names:
            continue
        prefix = f"{pred.name}{VALUE}Patient/"
        for low, high in pred.ranges or ():
            if high is None and low.startswith(prefix):
                found.add(low[len(prefix) :])
    return found


def _always(keys: frozenset[str]) -> bool:
    return True


def _never(keys: frozenset[str]) -> bool:
    return False


@cache
def _scope_predicates(
    resource_type: str, query: tuple[tuple[str, str], ...], base: str
) -> tuple[Predicate, ...]:
    """A granular scope's filter as search predicates; () when it cannot be evaluated (chains,
    unknown parameters), and then it matches nothing: fail closed."""
    search = parse(resource_type, list(query), base, strict=False)
    if search.chains or search.ignored or search.result:
        return ()
    return tuple(search.predicates)


def _scope_matches(
    scope: ResourceScope,
    resource_type: str,
    base: str,
    keys: frozenset[str],
    resource: dict[str, Any] | None,
) -> bool:
    predicates = _scope_predicates(resource_type, scope.query, base)
    if not predicates:
        return False
    for p in predicates:
        if p.ids is not None:
            if resource is None or resource.get("id") not in p.ids:
                return False
        elif not p.test(keys):
            return False
        if p.resource_test is not None and (resource is None or not p.resource_test(resource)):
            return False
    return True


def _add_filters(search: Search, filters: tuple[ResourceScope, ...], base: str) -> None:
    """Granular scopes (`patient/Observation.rs?category=laboratory`): one filter is added as
    ordinary search parameters (which can drive the index); several become one any-of test on
    the search keys (results are checked again with the whole resource afterwards)."""
    rtype = search.resource_type
    if len(filters) == 1:
        predicates = _scope_predicates(rtype, filters[0].query, base)
        search.predicates.extend(predicates or [Predicate("_scope", None, _never, 0)])
        return

    def any_scope(keys: frozenset[str]) -> bool:
        return any(
            all(p.test(keys) for p in _scope_predicates(rtype, s.query, base) if p.ids is None)
            and bool(_scope_predicates(rtype, s.query, base))
            for s in filters
        )

    search.predicates.append(Predicate("_scope", None, any_scope, 0))


# -- building the context ---------------------------------------------------------------------


class Delegations:
    """The Consents naming each RelatedPerson, cached for at most `staleness` seconds so that
    revoking a Consent takes effect on live tokens within a second (ARCHITECTURE.md item 8)."""

    def __init__(self, staleness: float = 1.0, size: int = 4096) -> None:
        self.staleness = staleness
        self.size = size
        self._cache: dict[str, tuple[float, dict[str, Delegation]]] = {}

    async def load(self, executor: Executor, actor: str) -> dict[str, Delegation]:
        hit = self._cache.get(actor)
        if hit is not None and time.monotonic() - hit[0] < self.staleness:
            return hit[1]
        search = parse("Consent", [("actor", actor)], executor.base, strict=True)
        matched = await executor.matching(search)
        consents = [loads(b) for b in await executor.bodies("Consent", matched)]
        # The RelatedPerson must itself be current and belong to the patient its Consents name
        # (catalogue DL-05): both links must agree.
        related = await executor.fetch("RelatedPerson", [actor.removeprefix("RelatedPerson/")])
        person = loads(related[0]) if related else {}
        own = (person.get("patient") or {}).get("reference")
        now = datetime.now(UTC)
        current = person.get("active") is not False and in_period(person.get("period"), now)
        by_patient: dict[str, list[dict[str, Any]]] = {}
        for consent in consents:
            ref = (consent.get("patient") or {}).get("reference")
            if current and isinstance(ref, str) and ref == own and ref.startswith("Patient/"):
                by_patient.setdefault(ref.removeprefix("Patient/"), []).append(consent)
        births = await _birth_dates(executor, list(by_patient))
        result = {
            pid: Delegation(tuple(found), births.get(pid)) for pid, found in by_patient.items()
        }
        if len(self._cache) >= self.size:
            self._cache.clear()
        self._cache[actor] = (time.monotonic(), result)
        return result


async def _birth_dates(executor: Executor, ids: list[str]) -> dict[str, date]:
    out: dict[str, date] = {}
    for pid, body in zip(ids, await executor.fetch("Patient", ids), strict=False):
        text = loads(body).get("birthDate")
        if isinstance(text, str) and len(text) == 10:
            try:
                out[pid] = date.fromisoformat(text)
            except ValueError:
                continue
    return out


async def context_for(
    token: AccessToken, executor: Executor, delegations: Delegations, self_consent_age: int
) -> AccessContext:
    """The AccessContext a verified token stands for."""
    found: dict[str, Delegation] = {}
    if token.fhir_user and token.fhir_user.startswith("RelatedPerson/"):
        found = await delegations.load(executor, token.fhir_user)
    return AccessContext(
        client_id=token.client_id,
        scopes=token.scopes,
        patient=token.patient,
        fhir_user=token.fhir_user,
        delegations=found,
        self_consent_age=self_consent_age,
    )


def access(request: Request) -> Access:
    """The request's Access, set by `AccessMiddleware` (absent only on public routes)."""
    found: Access = request.scope["state"]["access"]
    return found


def visible_entries(
    access: Access, letter: str, items: Iterable[tuple[str, str, bytes]]
) -> list[tuple[str, str, bytes]]:
    return [(t, i, b) for t, i, b in items if access.visible(letter, t, b)]
