"""Structural validation of resources: the only module that imports `fhir.resources`.

R4B models match R4 field for field on the PHR resource types (ARCHITECTURE.md, item 1). The 18 R4
types missing from R4B are checked for shape only; the 13 types R4B added are not R4 and are
refused as unknown.
"""

from __future__ import annotations

import contextlib
import types
import typing
from collections import OrderedDict
from decimal import Decimal
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError

from fhir_server.errors import FhirError, Issue, bad_request, not_found
from fhir_server.jsonbody import dumps
from fhir_server.search.definitions import resource_types

_MAX_ISSUES = 20


def check_type(resource_type: str) -> None:
    """404 for anything that is not an R4 resource type."""
    if resource_type not in resource_types():
        raise not_found(f"Unknown resource type '{resource_type}'")


def _model(resource_type: str) -> Any | None:
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def _location(loc: tuple[Any, ...], resource_type: str) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate_resource(resource: Any, resource_type: str | None = None) -> dict[str, Any]:
    """Check a parsed body is a structurally valid R4 resource (of `resource_type`, if given)."""
    if not isinstance(resource, dict):
        raise bad_request("The body must be a JSON object holding a FHIR resource", "structure")
    actual = resource.get("resourceType")
    if not isinstance(actual, str):
        raise bad_request("The resource has no resourceType", "required")
    if resource_type is not None and actual != resource_type:
        raise bad_request(
            f"resourceType '{actual}' does not match the URL's type '{resource_type}'"
        )
    if actual not in resource_types():
        raise bad_request(f"'{actual}' is not an R4 resource type", "not-supported")
    for index, item in enumerate(resource.get("contained") or []):
        inner = item.get("resourceType") if isinstance(item, dict) else None
        if isinstance(inner, str) and inner not in resource_types():
            raise bad_request(f"{actual}.contained[{index}]: '{inner}' is not an R4 resource type")
    model = _model(actual)
    if model is None:
        return resource
    misses: list[_Miss] = []
    try:
        parsed = model.model_validate(_known.substitute(resource, model, misses))
    except ValidationError as exc:
        issues = [
            Issue(
                "structure" if err["type"] == "extra_forbidden" else "value",
                f"{_location(err['loc'], actual)}: {err['msg']}",
                expression=(_location(err["loc"], actual),),
            )
            for err in exc.errors()[:_MAX_ISSUES]
        ]
        raise FhirError(f"The {actual} resource is not valid R4", 400, "invalid", issues) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # fhir.resources raises KeyError for a contained resource of an unknown type
        raise bad_request(f"The {actual} resource is not valid R4: {exc!r}") from None
    problems: list[Issue] = []
    _check_json_kinds(resource, parsed, actual, problems)
    if problems:
        raise FhirError(f"The {actual} resource is not valid R4", 400, "invalid", problems)
    _known.remember(parsed, misses)
    return resource


# -- elements already validated ---------------------------------------------------------------
# FHIR data repeats itself (codings, units, categories, meta tags, references within a record),
# and `fhir.resources` validates every nested element through Python-level validators, which is
# most of its cost. A complex element whose exact JSON was already part of a valid resource is
# handed to the model as that element's validated instance, which the model accepts as is: the
# result is the same as validating it again. The JSON kinds check still sees every value.

# An element not found: its cache key, and where it is in the resource (JSON name and list index
# of each step), to pick its validated instance from the model once the resource passed.
_Path = tuple[tuple[str, int | None], ...]
_Miss = tuple[tuple[type[BaseModel], bytes], _Path]


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(element type, is a list) of a field annotation, through Optional/Union."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None, False
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


@cache
def _complex_fields(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """JSON name -> model class of the fields holding complex elements (not resources)."""
    out: dict[str, type[BaseModel]] = {}
    for name, info in model.model_fields.items():
        element, _ = _unwrap(info.annotation)
        get_klass = getattr(element, "get_model_klass", None)
        if get_klass is None:
            continue
        try:
            klass = get_klass()
        except (ImportError, AttributeError, KeyError, ValueError):
            continue
        if isinstance(klass, type) and issubclass(klass, BaseModel):
            if getattr(klass, "has_resource_base", lambda: True)():
                continue  # contained resources: their class depends on the value
            out[info.alias or name] = klass
    return out


class _KnownElements:
    """Validated instances of complex elements by (class, exact JSON), least recently used
    dropped past `size` (a bound on memory, never on correctness)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.instances: OrderedDict[tuple[type[BaseModel], bytes], BaseModel] = OrderedDict()
        self.ids: set[int] = set()

    def holds(self, instance: Any) -> bool:
        """True for an instance this cache handed out (so its JSON was checked before)."""
        return id(instance) in self.ids

    def _key(self, klass: type[BaseModel], value: Any) -> tuple[type[BaseModel], bytes] | None:
        try:
            return klass, dumps(value)
        except TypeError:
            return None

    def _lookup(
        self,
        klass: type[BaseModel],
        value: Any,
        misses: list[_Miss],
        path: _Path,
    ) -> Any:
        if not isinstance(value, dict):
            return value
        key = self._key(klass, value)
        if key is not None:
            found = self.instances.get(key)
            if found is not None:
                # Bundles validate in a worker thread (fhir_server/offload.py), single writes on
                # the event loop's: the other thread may have dropped it meanwhile.
                with contextlib.suppress(KeyError):
                    self.instances.move_to_end(key)
                return found
            misses.append((key, path))
        return self.substitute(value, klass, misses, path)

    def substitute(
        self,
        data: dict[str, Any],
        model: type[BaseModel],
        misses: list[_Miss],
        path: _Path = (),
    ) -> dict[str, Any]:
        """`data` with every known complex element replaced by its validated instance; the
        others are added to `misses`, for `remember`."""
        fields = _complex_fields(model)
        if not fields:
            return data
        out: dict[str, Any] | None = None
        for name, value in data.items():
            klass = fields.get(name)
            if klass is None or value is None:
                continue
            if isinstance(value, list):
                new: Any = [
                    self._lookup(klass, item, misses, (*path, (name, index)))
                    for index, item in enumerate(value)
                ]
                changed = any(a is not b for a, b in zip(new, value, strict=True))
            else:
                new = self._lookup(klass, value, misses, (*path, (name, None)))
                changed = new is not value
            if changed:
                if out is None:
                    out = dict(data)
                out[name] = new
        return data if out is None else out

    def remember(self, parsed: BaseModel, misses: list[_Miss]) -> None:
        """Record the validated instances of the elements `substitute` did not find, now that
        their resource passed validation."""
        for key, path in misses:
            node: Any = parsed
            for name, index in path:
                fields = _fields_by_json_name(type(node)) if isinstance(node, BaseModel) else {}
                attribute = fields.get(name)
                node = getattr(node, attribute, None) if attribute else None
                if index is not None:
                    node = node[index] if isinstance(node, list) and index < len(node) else None
                if node is None:
                    break
            if isinstance(node, key[0]) and key not in self.instances:
                self.instances[key] = node
                self.ids.add(id(node))
        while len(self.instances) > self.size:
            _, dropped = self.instances.popitem(last=False)
            self.ids.discard(id(dropped))


_known = _KnownElements()


# -- JSON value kinds ------------------------------------------------------------------------
# The models coerce ("yes" -> true, "3" -> 3, 0 -> 1970-01-01). FHIR JSON does not
# (https://hl7.org/fhir/R4/json.html#primitive): booleans are JSON true/false, integers and
# decimals JSON numbers, every other primitive a JSON string, and null appears only in arrays.


@cache
def _fields_by_json_name(model: type[BaseModel]) -> dict[str, str]:
    return {field.alias or name: name for name, field in model.model_fields.items()}


def _wrong_kind(value: Any, parsed: Any) -> str | None:
    """What `value` should have been, if its JSON kind does not fit the primitive it became."""
    if isinstance(parsed, bool):
        return None if isinstance(value, bool) else "a JSON boolean (true or false)"
    if isinstance(parsed, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "a JSON number without a fraction"
    if isinstance(parsed, (Decimal, float)):
        ok = isinstance(value, (int, Decimal)) and not isinstance(value, bool)
        return None if ok else "a JSON number"
    return None if isinstance(value, str) else "a JSON string"


def _check_json_kinds(
    data: dict[str, Any], model: BaseModel, path: str, issues: list[Issue]
) -> None:
    fields = _fields_by_json_name(type(model))
    for key, value in data.items():
        name = fields.get(key)
        if name is not None and len(issues) < _MAX_ISSUES:
            _check_value(value, getattr(model, name, None), f"{path}.{key}", issues, False)


def _check_value(value: Any, parsed: Any, path: str, issues: list[Issue], in_array: bool) -> None:
    if value is None:
        if not in_array:  # null only holds a place in an array of primitives
            issues.append(Issue("structure", f"{path}: null is not a value", expression=(path,)))
    elif isinstance(value, list):
        if isinstance(parsed, list):
            for index, (item, parsed_item) in enumerate(zip(value, parsed, strict=False)):
                _check_value(item, parsed_item, f"{path}[{index}]", issues, True)
    elif isinstance(value, dict):
        if _known.holds(parsed):
            return  # the same JSON already passed this check as part of a valid resource
        inner = value.get("resourceType")  # contained and other nested resources
        if isinstance(inner, str) and inner not in resource_types():
            message = f"{path}: '{inner}' is not an R4 resource type"
            issues.append(Issue("not-supported", message, expression=(path,)))
        elif isinstance(parsed, BaseModel):
            _check_json_kinds(value, parsed, path, issues)
    elif parsed is not None and (expected := _wrong_kind(value, parsed)) is not None:
        issues.append(Issue("value", f"{path}: must be {expected}", expression=(path,)))


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level JSON names marked isSummary for `_summary=true` (search.html#summary)."""
    model = _model(resource_type)
    if model is None:
        return frozenset({"id", "meta"})
    names: set[str] = {"resourceType"}
    for field_name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            alias = info.alias or field_name
            names.update({alias, "_" + alias})
    return frozenset(names)


@cache
def mandatory_elements(resource_type: str) -> frozenset[str]:
    """Top-level JSON names with a minimum cardinality of 1 (for `_summary=text`)."""
    model = _model(resource_type)
    if model is None:
        return frozenset()
    return frozenset(
        info.alias or name
        for name, info in model.model_fields.items()
        if info.is_required()
        or (
            isinstance(info.json_schema_extra, dict)
            and (
                info.json_schema_extra.get("element_required")
                or info.json_schema_extra.get("one_of_many_required")
            )
        )
    )
