"""SMART on FHIR scopes, v1 and v2, granular scopes included.

https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
# v2 permission letters, in the only order the grammar allows.
LETTERS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
# Scopes that carry no resource permission but mean something to the server.
SPECIAL = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)
_RESOURCE = re.compile(
    r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(?:\?(.+))?$"
)


@dataclass(frozen=True)
class ResourceScope:
    """One resource scope: who (context), what (type), which interactions (letters), and an
    optional granular filter (search parameters the resource must match)."""

    context: str
    resource_type: str  # a type or "*"
    permissions: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()
    text: str = ""

    def covers(self, context: str, resource_type: str, permission: str) -> bool:
        return (
            self.context == context
            and self.resource_type in ("*", resource_type)
            and permission in self.permissions
        )


@dataclass(frozen=True)
class Scopes:
    """A parsed scope string: resource scopes plus the special scopes present."""

    resources: tuple[ResourceScope, ...]
    special: frozenset[str]
    unknown: tuple[str, ...]

    def text(self) -> str:
        return " ".join([*sorted(self.special), *(s.text for s in self.resources)])


def parse_scope(token: str) -> ResourceScope | None:
    """A resource scope, or None when `token` is not one (grammar errors included)."""
    match = _RESOURCE.match(token)
    if not match:
        return None
    context, resource_type, permission, query = match.groups()
    letters = V1_PERMISSIONS.get(permission, permission)
    if not letters:
        return None  # "patient/Observation." has no permission
    pairs: tuple[tuple[str, str], ...] = ()
    if query:
        pairs = tuple(parse_qsl(query, keep_blank_values=False, strict_parsing=False))
        if not pairs:
            return None
    return ResourceScope(context, resource_type, frozenset(letters), pairs, token)


def parse_scopes(text: str) -> Scopes:
    """Split a space-separated scope string (RFC 6749 section 3.3)."""
    resources: list[ResourceScope] = []
    special: set[str] = set()
    unknown: list[str] = []
    for token in dict.fromkeys(text.split()):
        if token in SPECIAL:
            special.add(token)
        elif (scope := parse_scope(token)) is not None:
            resources.append(scope)
        else:
            unknown.append(token)
    return Scopes(tuple(resources), frozenset(special), tuple(unknown))


def within(requested: ResourceScope, allowed: ResourceScope) -> bool:
    """True when every access `requested` grants is also granted by `allowed`."""
    if requested.context != allowed.context:
        return False
    if allowed.resource_type != "*" and allowed.resource_type != requested.resource_type:
        return False
    if not requested.permissions <= allowed.permissions:
        return False
    # A granular allowance only covers requests at least as narrow (same filter, maybe more).
    return set(allowed.query) <= set(requested.query)


def narrow(requested: Scopes, allowed: Scopes) -> Scopes:
    """The requested scopes that the allowed set covers (special scopes must be allowed as such)."""
    resources = tuple(
        r for r in requested.resources if any(within(r, a) for a in allowed.resources)
    )
    return Scopes(resources, requested.special & allowed.special, ())
