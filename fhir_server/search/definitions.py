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
_AS_PAREN = re.compile(r"^\((.+) as ([A-Za-z]+)\)((?:\.[a-z][A-Za-z0-9]*)*)$")
_AS_CALL = re.compile(r"\.as\(([A-Za-z]+)\)")
_RESOLVE_IS = re.compile(r"^(.+)\.where\(resolve\(\) is ([A-Za-z]+)\)$")
_SIMPLE_PATH = re.compile(
    r"^[A-Z][A-Za-z]*((?:\.[a-z][A-Za-z0-9]*(?:\.ofType\([A-Za-z]+\))?)+)"
    r"(?:\.where\(([a-z][A-Za-z]*)='([^']*)'\))?$"
)
_STEP = re.compile(r"\.([a-z][A-Za-z0-9]*)(?:\.ofType\(([A-Za-z]+)\))?")


def _path_evaluator(
    resource_type: str, steps_text: str, where: tuple[str, str] | None
) -> Callable[[Any], list[Any]]:
    """A plain dict walk for `Type.a.b`, `Type.a.ofType(T).b` and `Type.a.where(f='v')`: most
    official expressions, evaluated far faster than the general FHIRPath engine. Choice elements
    (`value[x]`) are looked up under their typed names (`valueQuantity`, ...), from the R4 model."""
    steps: list[tuple[str, ...]] = []
    path = resource_type
    for name, of_type in _STEP.findall(steps_text):
        path += "." + name
        choices = _R4["choiceTypePaths"].get(path)
        if of_type:
            steps.append((name + of_type[0].upper() + of_type[1:],))
            path = of_type
        elif choices:
            steps.append(tuple(name + t[0].upper() + t[1:] for t in choices))
        else:
            steps.append((name,))

    def evaluate(resource: Any) -> list[Any]:
        nodes = [resource]
        for keys in steps:
            found: list[Any] = []
            for node in nodes:
                if not isinstance(node, dict):
                    continue
                for key in keys:
                    value = node.get(key)
                    if value is None:
                        continue
                    if isinstance(value, list):
                        found.extend(value)
                    else:
                        found.append(value)
            if not found:
                return found
            nodes = found
        if where is not None:
            field, wanted = where
            return [n for n in nodes if isinstance(n, dict) and n.get(field) == wanted]
        return nodes

    return evaluate


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
    # Top-level JSON names the expression starts from: a resource with none of them has no value,
    # which lets most parameters of a resource be skipped without evaluating anything.
    first_keys: frozenset[str] | None = None

    def values(self, resource: dict[str, Any]) -> list[Any]:
        if self.first_keys is not None and self.first_keys.isdisjoint(resource):
            return []
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


_FIRST_STEP = re.compile(r"^\(?[A-Z][A-Za-z]*\.([a-z][A-Za-z0-9]*)")


def _first_keys(part: str, resource_type: str) -> frozenset[str] | None:
    m = _FIRST_STEP.match(part)
    if not m:
        return None
    name = m.group(1)
    choices = _R4["choiceTypePaths"].get(f"{resource_type}.{name}")
    if choices:
        return frozenset(name + t[0].upper() + t[1:] for t in choices)
    return frozenset({name})


def _compile_part(part: str, resource_type: str) -> PathPart:
    for generic in ("Resource.", "DomainResource."):
        if part.startswith(generic):
            part = resource_type + "." + part[len(generic) :]
    target = None
    if m := _RESOLVE_IS.match(part):
        part, target = m.group(1), m.group(2)
    if m := _AS_PAREN.match(part):
        part = f"{m.group(1)}.ofType({m.group(2)}){m.group(3)}"
    part = _AS_CALL.sub(r".ofType(\1)", part)
    if m := _SIMPLE_PATH.match(part):
        where = (m.group(2), m.group(3)) if m.group(2) else None
        evaluate = _path_evaluator(resource_type, m.group(1), where)
        return PathPart(part, evaluate, target, _first_keys(part, resource_type))
    compiled: Callable[[Any], list[Any]] = fhirpathpy.compile(part, _R4)  # type: ignore[assignment]
    return PathPart(part, compiled, target)


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
