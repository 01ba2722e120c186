"""The demo scenario's files: written by build_demo.py, self-consistent, idempotent to load."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from seed_data import build_demo
from seed_data.sources import references

DEMO = Path(build_demo.__file__).resolve().parent / "demo"


def entries() -> list[dict]:
    return [e for f in sorted(DEMO.glob("*.json")) for e in json.loads(f.read_text())["entry"]]


def test_the_committed_files_are_what_build_demo_writes():
    built = build_demo.build()
    assert sorted(built) == sorted(p.name for p in DEMO.glob("*.json"))
    for name, bundle in built.items():
        on_disk = (DEMO / name).read_bytes()
        assert on_disk == orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n", (
            f"{name} is stale: run python -m seed_data.build_demo"
        )


def test_every_entry_is_a_put_at_a_unique_stable_id_and_every_reference_resolves():
    keys = set()
    for entry in entries():
        resource = entry["resource"]
        key = f"{resource['resourceType']}/{resource['id']}"
        assert entry["request"] == {"method": "PUT", "url": key}
        assert resource["id"].startswith("demo-") and len(resource["id"]) <= 64
        assert key not in keys, key
        keys.add(key)
    dangling = {
        ref for entry in entries() for ref in references(entry["resource"]) if ref not in keys
    }
    assert not dangling
