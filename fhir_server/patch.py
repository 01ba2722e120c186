"""JSON Patch (RFC 6902) applied to a resource: https://hl7.org/fhir/R4/http.html#patch."""

from __future__ import annotations

import copy
import re
from typing import Any

from fhir_server.errors import FhirError, bad_request

_OPS = {"add", "remove", "replace", "move", "copy", "test"}


_BAD_ESCAPE = re.compile(r"~(?![01])")


def _pointer(path: Any) -> list[str]:
    """RFC 6901: `~1` is `/` and `~0` is `~`; any other `~` is an error."""
    if not isinstance(path, str) or (path and not path.startswith("/")) or _BAD_ESCAPE.search(path):
        raise bad_request(f"Invalid JSON Pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _index(container: list[Any], token: str, *, insert: bool) -> int:
    if insert and token == "-":  # noqa: S105 - the RFC 6901 end-of-array token
        return len(container)
    digits = token.isascii() and token.isdigit()  # not "²" (int() fails) nor "１"
    if not digits or (len(token) > 1 and token.startswith("0")):
        raise bad_request(f"Invalid array index {token!r}")
    index = int(token)
    if index > len(container) or (not insert and index == len(container)):
        raise bad_request(f"Array index {index} is out of range")
    return index


def _parent(doc: Any, tokens: list[str]) -> tuple[Any, str]:
    if not tokens:
        raise bad_request("The operation cannot target the whole resource")
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, insert=False)]
        else:
            raise bad_request(f"Path /{'/'.join(tokens)} does not exist")
    return node, tokens[-1]


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, insert=False)]
    raise bad_request(f"Path /{'/'.join(tokens)} does not exist")


def _add(doc: Any, tokens: list[str], value: Any) -> None:
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, insert=True), value)
    else:
        raise bad_request(f"Cannot add at /{'/'.join(tokens)}")


def _remove(doc: Any, tokens: list[str]) -> Any:
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, insert=False))
    raise bad_request(f"Path /{'/'.join(tokens)} does not exist")


def _json_equal(a: Any, b: Any) -> bool:
    """RFC 6902 4.6 equality: same JSON type and value (Python alone says `True == 1`)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return bool(a == b)


def apply_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply RFC 6902 operations to a copy of `resource`; a failed `test` is 422."""
    if not isinstance(operations, list):
        raise bad_request("A JSON Patch document is a JSON array of operations")
    doc = copy.deepcopy(resource)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or op["op"] not in _OPS:
            raise bad_request(f"Patch operation {number} has no valid 'op'")
        kind, tokens = op["op"], _pointer(op.get("path"))
        if kind in {"add", "replace", "test"} and "value" not in op:
            raise bad_request(f"Patch operation {number} ({kind}) needs a 'value'")
        if kind == "add":
            _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, tokens)
        elif kind == "replace":
            _remove(doc, tokens)
            _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind in {"move", "copy"}:
            source = _pointer(op.get("from"))
            if kind == "move" and tokens[: len(source)] == source and tokens != source:
                raise bad_request(f"Patch operation {number} moves a value into itself")
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            _add(doc, tokens, value)
        elif not _json_equal(_get(doc, tokens), op["value"]):
            raise FhirError(f"Patch test failed at {op['path']}", 422, "processing")
    if not isinstance(doc, dict):
        raise bad_request("The patched result is not a resource")
    return doc
