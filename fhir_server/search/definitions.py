"""The official R4 SearchParameters, compiled per resource type.

Expressions come unmodified from `hl7.fhir.r4.core` 4.0.1. Two forms fhirpathpy cannot evaluate are
rewritten when compiling (never in the vendored data):
- `(X as T)` and `X.as(T)` become `X.ofType(T)` (`as` fails on collections);
- `X.where(resolve() is T)` becomes `X`, keeping only references whose target type is `T`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

_R4 = models["r4"]
_AS_PAREN = re.compile(r"^\((.+) as ([A-Za-z]+)\)$")
_AS_CALL = re.compile(r"\.as\(([A-Za-z]+)\)")
_RESOLVE_IS = re.compile(r"^(.+)\.where\(resolve\(\) is ([A-Za-z]+)\)$")


def _load(name: str) -> Any:
    return json.loads(resources.files("fhir_server.definitions").joinpath(name).read_text("utf-8"))


@cache
def resource_types() -> frozenset[str]:
    """The 146 concrete R4 resource types."""
    return frozenset(_load("resource-types.json"))


@cache
def compartment_params() -> dict[str, list[str]]:
    """Patient CompartmentDefinition: resource type -> parameter codes."""
    definition = _load("compartmentdefinition-patient.json")
    return {r["code"]: r.get("param", []) for r in definition["resource"] if r.get("param")}


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level `|` operators."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expression):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


@dataclass(frozen=True)
class PathPart:
    """One branch of a parameter's expression, compiled for one resource type."""

    expression: str
    evaluate: Callable[[Any], list[Any]]
    target_type: str | None  # from `where(resolve() is T)`

    def values(self, resource: dict[str, Any]) -> list[Any]:
        found = self.evaluate(resource)
        if self.target_type is None:
            return found
        prefix = self.target_type + "/"
        return [
            v
            for v in found
            if isinstance(v, dict)
            and (
                str(v.get("reference", "")).startswith(prefix)
                or f"/{prefix}" in str(v.get("reference", ""))
                or v.get("type") == self.target_type
            )
        ]


@dataclass(frozen=True)
class SearchParam:
    """A SearchParameter as it applies to one resource type."""

    code: str
    type: str
    url: str
    resource_type: str
    targets: tuple[str, ...]
    parts: tuple[PathPart, ...]

    def values(self, resource: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for part in self.parts:
            out.extend(part.values(resource))
        return out


def _compile_part(part: str, resource_type: str) -> PathPart:
    for generic in ("Resource.", "DomainResource."):
        if part.startswith(generic):
            part = resource_type + "." + part[len(generic) :]
    target = None
    if m := _RESOLVE_IS.match(part):
        part, target = m.group(1), m.group(2)
    if m := _AS_PAREN.match(part):
        part = f"{m.group(1)}.ofType({m.group(2)})"
    part = _AS_CALL.sub(r".ofType(\1)", part)
    return PathPart(part, fhirpathpy.compile(part, _R4), target)


def _applies_to(part: str, resource_type: str) -> bool:
    bare = part.lstrip("(")
    return (
        bare.startswith(resource_type + ".")
        or bare.startswith("Resource.")
        or bare.startswith("DomainResource.")
    )


@cache
def _definitions_by_type() -> dict[str, dict[str, dict[str, Any]]]:
    by_type: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in _load("search-parameters.json")["entry"]:
        sp = entry["resource"]
        for base in sp.get("base", ()):
            by_type.setdefault(base, {})[sp["code"]] = sp
    return by_type


@cache
def search_params(resource_type: str) -> dict[str, SearchParam]:
    """Every official parameter applicable to `resource_type`, compiled, by code."""
    by_type = _definitions_by_type()
    merged = {**by_type.get("Resource", {}), **by_type.get("DomainResource", {})}
    merged.update(by_type.get(resource_type, {}))
    out: dict[str, SearchParam] = {}
    for code, sp in merged.items():
        expression = sp.get("expression")
        if not expression:
            continue
        parts = [p for p in split_union(expression) if _applies_to(p, resource_type)]
        if not parts:
            continue
        out[code] = SearchParam(
            code=code,
            type=sp["type"],
            url=sp["url"],
            resource_type=resource_type,
            targets=tuple(sp.get("target", ())),
            parts=tuple(_compile_part(p, resource_type) for p in parts),
        )
    return out
