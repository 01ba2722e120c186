"""JSON Patch (RFC 6902) and JSON Pointer (RFC 6901), without a server.

Cases named A.n are the examples of RFC 6902 Appendix A that apply to an object document.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from fhir_server.errors import FhirError
from fhir_server.jsonbody import parse_json
from fhir_server.patch import apply_patch

APPLIES = [
    (
        "A.1 adding an object member",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "A.2 adding an array element",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    (
        "A.3 removing an object member",
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
    ),
    (
        "A.4 removing an array element",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "A.5 replacing a value",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6 moving a value",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7 moving an array element",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8 testing a value: success",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.10 adding a nested member object",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11 ignoring unrecognized elements",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    (
        "A.14 ~ escape ordering",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
    ),
    (
        "A.16 adding an array value",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    (
        "~1 is a slash",
        {"a/b": 1},
        [{"op": "replace", "path": "/a~1b", "value": 2}],
        {"a/b": 2},
    ),
    ("~0 is a tilde", {"m~n": 1}, [{"op": "remove", "path": "/m~0n"}], {}),
    ("empty key", {"": 1}, [{"op": "replace", "path": "/", "value": 2}], {"": 2}),
    (
        "add replaces an existing member",
        {"a": 1},
        [{"op": "add", "path": "/a", "value": 2}],
        {"a": 2},
    ),
    (
        "add at the end index",
        {"a": [1]},
        [{"op": "add", "path": "/a/1", "value": 2}],
        {"a": [1, 2]},
    ),
    (
        "replace an array element",
        {"a": [1, 2, 3]},
        [{"op": "replace", "path": "/a/1", "value": 9}],
        {"a": [1, 9, 3]},
    ),
    (
        "move to the end of an array",
        {"a": [1, 2, 3]},
        [{"op": "move", "from": "/a/0", "path": "/a/-"}],
        {"a": [2, 3, 1]},
    ),
    (
        "move onto itself is a no-op",
        {"a": {"b": 1}},
        [{"op": "move", "from": "/a", "path": "/a"}],
        {"a": {"b": 1}},
    ),
    (
        "move a child over its parent",
        {"a": {"b": 1}},
        [{"op": "move", "from": "/a/b", "path": "/a"}],
        {"a": 1},
    ),
    (
        "copy into itself copies the old value",
        {"a": {"b": 1}},
        [{"op": "copy", "from": "/a", "path": "/a/c"}],
        {"a": {"b": 1, "c": {"b": 1}}},
    ),
    (
        "copy is deep",
        {"a": {"b": [1]}},
        [
            {"op": "copy", "from": "/a", "path": "/c"},
            {"op": "add", "path": "/c/b/-", "value": 2},
        ],
        {"a": {"b": [1]}, "c": {"b": [1, 2]}},
    ),
    (
        "test the whole document",
        {"a": 1},
        [{"op": "test", "path": "", "value": {"a": 1}}],
        {"a": 1},
    ),
    (
        "numbers compare by value",
        {"a": Decimal("1.50")},
        [{"op": "test", "path": "/a", "value": Decimal("1.5")}],
        {"a": Decimal("1.50")},
    ),
    (
        "object member order does not matter",
        {"a": {"x": 1, "y": 2}},
        [{"op": "test", "path": "/a", "value": {"y": 2, "x": 1}}],
        {"a": {"x": 1, "y": 2}},
    ),
    ("empty patch", {"a": 1}, [], {"a": 1}),
]


@pytest.mark.parametrize(
    ("doc", "ops", "expected"), [c[1:] for c in APPLIES], ids=[c[0] for c in APPLIES]
)
def test_patch_applies(doc, ops, expected):
    original = copy.deepcopy(doc)
    assert apply_patch(doc, ops) == expected
    assert doc == original, "the input is not modified"


FAILS = [
    (
        "A.9 testing a value: error",
        {"baz": "qux"},
        [{"op": "test", "path": "/baz", "value": "bar"}],
        422,
    ),
    (
        "A.12 adding to a nonexistent target",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        400,
    ),
    (
        "A.15 comparing strings and numbers",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": "10"}],
        422,
    ),
    ("true is not 1", {"a": 1}, [{"op": "test", "path": "/a", "value": True}], 422),
    ("false is not 0", {"a": 0}, [{"op": "test", "path": "/a", "value": False}], 422),
    ("[true] is not [1]", {"a": [1]}, [{"op": "test", "path": "/a", "value": [True]}], 422),
    ("null is not missing", {"a": None}, [{"op": "test", "path": "/a", "value": {}}], 422),
    ("array is not object", {"a": []}, [{"op": "test", "path": "/a", "value": {}}], 422),
    ("test a missing member", {"a": 1}, [{"op": "test", "path": "/b", "value": 1}], 400),
    (
        "move into its own child",
        {"a": {"b": {}}},
        [{"op": "move", "from": "/a", "path": "/a/b/c"}],
        400,
    ),
    ("move from a missing member", {"a": 1}, [{"op": "move", "from": "/x", "path": "/y"}], 400),
    ("copy without from", {"a": 1}, [{"op": "copy", "path": "/b"}], 400),
    ("remove a missing member", {"a": 1}, [{"op": "remove", "path": "/b"}], 400),
    ("replace a missing member", {"a": 1}, [{"op": "replace", "path": "/b", "value": 1}], 400),
    ("add without value", {"a": 1}, [{"op": "add", "path": "/b"}], 400),
    ("replace without value", {"a": 1}, [{"op": "replace", "path": "/a"}], 400),
    ("test without value", {"a": 1}, [{"op": "test", "path": "/a"}], 400),
    ("unknown op", {"a": 1}, [{"op": "merge", "path": "/a", "value": 1}], 400),
    ("op missing", {"a": 1}, [{"path": "/a", "value": 1}], 400),
    ("op as a list", {"a": 1}, [{"op": ["add"], "path": "/a", "value": 1}], 400),
    ("op as an object", {"a": 1}, [{"op": {"add": 1}, "path": "/a", "value": 1}], 400),
    ("operation not an object", {"a": 1}, ["add"], 400),
    ("patch not an array", {"a": 1}, {"op": "add", "path": "/a", "value": 1}, 400),
    ("path missing", {"a": 1}, [{"op": "add", "value": 1}], 400),
    ("path not a string", {"a": 1}, [{"op": "add", "path": 1, "value": 1}], 400),
    ("path without a leading slash", {"a": 1}, [{"op": "add", "path": "a", "value": 1}], 400),
    ("invalid escape ~2", {"a": 1}, [{"op": "add", "path": "/a~2", "value": 1}], 400),
    ("dangling ~", {"a": 1}, [{"op": "add", "path": "/a~", "value": 1}], 400),
    ("add to the whole document", {"a": 1}, [{"op": "add", "path": "", "value": {}}], 400),
    ("remove the whole document", {"a": 1}, [{"op": "remove", "path": ""}], 400),
    ("array index past the end", {"a": [1]}, [{"op": "add", "path": "/a/2", "value": 0}], 400),
    ("remove at the end index", {"a": [1]}, [{"op": "remove", "path": "/a/1"}], 400),
    ("remove at -", {"a": [1]}, [{"op": "remove", "path": "/a/-"}], 400),
    ("replace at -", {"a": [1]}, [{"op": "replace", "path": "/a/-", "value": 0}], 400),
    ("leading zero index", {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}], 400),
    ("negative index", {"a": [1, 2]}, [{"op": "remove", "path": "/a/-1"}], 400),
    ("superscript digit index", {"a": [1, 2]}, [{"op": "add", "path": "/a/²", "value": 0}], 400),
    ("fullwidth digit index", {"a": [1, 2]}, [{"op": "add", "path": "/a/１", "value": 0}], 400),
    ("index with a sign", {"a": [1, 2]}, [{"op": "add", "path": "/a/+1", "value": 0}], 400),
    ("index into a string", {"a": "xy"}, [{"op": "add", "path": "/a/0", "value": 0}], 400),
    (
        "a later op fails",
        {"a": 1},
        [{"op": "remove", "path": "/a"}, {"op": "remove", "path": "/a"}],
        400,
    ),
]


@pytest.mark.parametrize(
    ("doc", "ops", "status"), [c[1:] for c in FAILS], ids=[c[0] for c in FAILS]
)
def test_patch_fails(doc, ops, status):
    original = copy.deepcopy(doc)
    with pytest.raises(FhirError) as caught:
        apply_patch(doc, ops)
    assert caught.value.status == status, caught.value.diagnostics
    assert doc == original, "a failed patch changes nothing"


def test_a13_duplicate_op_member_is_invalid_json():
    """A.13: a patch document with a repeated member is refused before it is applied."""
    body = b'[{ "op": "add", "path": "/baz", "value": "qux", "op": "remove" }]'
    with pytest.raises(FhirError) as caught:
        parse_json(body, 64)
    assert caught.value.status == 400
    assert "Duplicate JSON property 'op'" in caught.value.diagnostics


def test_values_are_copied_not_shared():
    value = {"nested": [1]}
    result = apply_patch({}, [{"op": "add", "path": "/a", "value": value}])
    value["nested"].append(2)
    assert result == {"a": {"nested": [1]}}
