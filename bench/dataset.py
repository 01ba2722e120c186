"""Synthea datasets for W2, W4 and W5, built through the server and cached between runs.

The four fixture bundles in `bench/data/synthea/` are cloned with a fresh uuid for every uuid they
contain (fullUrls, `urn:uuid:` references, ids, identifiers), and each clone is loaded as one
transaction (`POST /fhir`), a few at a time. A dataset of N *sets* holds one merged patient for
W5 (every bundle's entries on one Patient: 957 resources) and N clones of each bundle
(960 resources per set). The smaller dataset is a prefix of the larger one (it is copied and loaded
further), so the W2 growth figure compares like with like.

The built SecantusDB directory and a manifest (patient ids) live in `bench/.cache/`, keyed by a
fingerprint of what would be stored (`fingerprint`); runs copy the directory, so the cache never
sees their writes.
"""

from __future__ import annotations

import fcntl
import functools
import gzip
import hashlib
import importlib.metadata
import json
import re
import shutil
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import orjson

from bench.server import ROOT, Server, serving
from fhir_server.indexing import ResourceIndexer
from fhir_server.jsonbody import dumps

DATA = Path(__file__).parent / "data" / "synthea"
CACHE = Path(__file__).parent / ".cache"
LOINC = "http://loinc.org"
LOADERS = 4  # concurrent transactions while building
_INDEXER = ResourceIndexer("http://bench/fhir")
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_URN = re.compile(rb'"urn:uuid:([0-9a-f-]{36})"')
_FORMAT = b"2"  # bump when what the builder loads changes
# The stored document's shape; what goes into its search and compartment fields is fingerprinted
# by computing them (`fingerprint`), so refactoring the indexer does not invalidate the cache.
_FINGERPRINTED = ("fhir_server/storage/repository.py", "fhir_server/storage/versions.py")


@dataclass(frozen=True)
class Source:
    """One fixture bundle and what the W2 queries need to know about it."""

    name: str
    text: bytes
    entries: int
    patient: bytes  # the Patient's fullUrl uuid
    codes: tuple[str, ...]  # LOINC codes of its Observations
    vital_from: str  # median date of its vital-signs Observations (W2 variant, `date=ge`)


@functools.cache
def sources() -> tuple[Source, ...]:
    out = []
    for path in sorted(DATA.glob("*.json.gz")):
        text = gzip.decompress(path.read_bytes())
        resources = [e["resource"] for e in orjson.loads(text)["entry"]]
        patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        observations = [r for r in resources if r["resourceType"] == "Observation"]
        codes = {
            c["code"] for o in observations for c in o["code"]["coding"] if c["system"] == LOINC
        }
        vitals = sorted(
            o["effectiveDateTime"][:10]
            for o in observations
            if "effectiveDateTime" in o
            and any(c["code"] == "vital-signs" for cat in o["category"] for c in cat["coding"])
        )
        name = path.name.removesuffix(".json.gz")
        out.append(
            Source(
                name,
                text,
                len(resources),
                patient.encode(),
                tuple(sorted(codes)),
                statistics.median_low(vitals),
            )
        )
    return tuple(out)


def clone(text: bytes, keep: dict[bytes, bytes] | None = None) -> bytes:
    """`text` with each distinct uuid replaced by a fresh one everywhere (or as `keep` says)."""
    mapping = dict(keep or {})
    return _UUID.sub(lambda m: mapping.setdefault(m[0], str(uuid4()).encode()), text)


def merged_patient() -> bytes:
    """One transaction putting every source's entries on one new Patient (W5)."""
    patient = str(uuid4()).encode()
    entries: list[Any] = []
    for n, source in enumerate(sources()):
        bundle = orjson.loads(clone(source.text, {source.patient: patient}))
        entries += [
            e for e in bundle["entry"] if n == 0 or e["resource"]["resourceType"] != "Patient"
        ]
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def resolved(bundle: bytes, keys: bool) -> bytes:
    """W4's baseline body: the bundle's resources with `urn:uuid:` references already rewritten to
    `Type/id` (Synthea resources carry their fullUrl uuid as id), as a JSON array of
    `{"resource": ...}`, each with the search and compartment fields the repository stores for it
    (`pat`, `k`) when `keys`."""
    types = {
        e["fullUrl"].removeprefix("urn:uuid:"): e["resource"]["resourceType"]
        for e in orjson.loads(bundle)["entry"]
    }

    def reference(m: re.Match[bytes]) -> bytes:
        uuid = m[1].decode()
        return f'"{types[uuid]}/{uuid}"'.encode() if uuid in types else m[0]

    entries = orjson.loads(_URN.sub(reference, bundle))["entry"]
    return orjson.dumps([baseline_item(e["resource"], keys) for e in entries])


def baseline_item(resource: dict[str, Any], keys: bool) -> dict[str, Any]:
    """A resource as the bare routes take it (`bench_routes._document`): with the search and
    compartment fields the repository would store for it (`pat`, `k`) when `keys`."""
    fields = _INDEXER.fields(resource["resourceType"], resource) if keys else {}
    return {"resource": resource, **fields}


@dataclass(frozen=True)
class Dataset:
    """A built database directory (`db/`) and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def db_dir(self) -> Path:
        return self.path / "db"

    @property
    def resources(self) -> int:
        return int(self.manifest["resources"])

    @property
    def everything_patient(self) -> str:
        return str(self.manifest["everything"]["patient"])

    @property
    def patients(self) -> list[tuple[Source, str]]:
        """(source bundle, patient id) of every clone."""
        by_name = {s.name: s for s in sources()}
        return [(by_name[name], pid) for name, pid in self.manifest["patients"]]


def fingerprint() -> str:
    """What the cached databases depend on: the bundles, the SecantusDB version, the document
    shape, and the search/compartment fields the server computes for every fixture resource."""
    digest = hashlib.sha256(_FORMAT + importlib.metadata.version("secantusdb").encode())
    for name in _FINGERPRINTED:
        digest.update((ROOT / name).read_bytes())
    for source in sources():
        digest.update(source.text)
        for entry in orjson.loads(source.text)["entry"]:
            resource = entry["resource"]
            rtype = resource["resourceType"]
            digest.update(dumps(_INDEXER.fields(rtype, resource)))
            digest.update(repr(_INDEXER.indexes(rtype)).encode())
    return digest.hexdigest()[:12]


def _post(client: httpx.Client, bundle: bytes, auth: tuple[tuple[str, str], ...]) -> list[str]:
    """POST one transaction; the ids the server gave its entries, in entry order."""
    response = client.post(
        "/fhir", content=bundle, headers={"Content-Type": "application/fhir+json", **dict(auth)}
    )
    if response.status_code != 200:
        raise RuntimeError(f"loading a bundle failed: {response.status_code} {response.text[:500]}")
    return [e["fullUrl"].rsplit("/", 1)[1] for e in response.json()["entry"]]


def _jobs(first_set: int, sets: int) -> Iterator[Source]:
    for _ in range(first_set, sets):
        yield from sources()


def _load(server: Server, manifest: dict[str, Any], sets: int) -> None:
    """Load clones up to `sets` sets (and the W5 patient first, into an empty database)."""
    started = time.monotonic()
    loaded = 0
    with httpx.Client(base_url=server.url, timeout=600) as client:
        if "everything" not in manifest:
            bundle = merged_patient()
            ids = _post(client, bundle, server.bearer())
            entries = orjson.loads(bundle)["entry"]
            manifest["everything"] = {"patient": ids[0], "resources": len(entries)}
            manifest["resources"] += len(entries)
            loaded += len(entries)

        def load(source: Source) -> tuple[Source, str]:
            ids = _post(client, clone(source.text), server.bearer())
            return source, ids[0]  # every fixture bundle starts with its Patient

        total = sum(s.entries for s in _jobs(manifest["sets"], sets))
        step = max(total // 10, 1)
        with ThreadPoolExecutor(LOADERS) as pool:
            for source, pid in pool.map(load, _jobs(manifest["sets"], sets)):
                manifest["patients"].append([source.name, pid])
                manifest["resources"] += source.entries
                before, loaded = loaded, loaded + source.entries
                if loaded // step != before // step:
                    rate = loaded / (time.monotonic() - started)
                    print(f"  loaded {loaded:,} resources, {rate:,.0f} resources/s", flush=True)
    manifest["sets"] = sets


def _build(target: Path, base: Dataset | None, sets: int, pin: list[str]) -> Dataset:
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    if base is not None:
        shutil.copytree(base.path, building)
        manifest = json.loads(json.dumps(base.manifest))
    else:
        building.mkdir(parents=True)
        manifest = {"fingerprint": fingerprint(), "sets": 0, "resources": 0, "patients": []}
    print(f"building the {sets}-set Synthea dataset in {target} (cached for later runs)")
    with serving(building / "db", building / "server.log", pin) as (_, server):
        _load(server, manifest, sets)
    (building / "manifest.json").write_text(json.dumps(manifest) + "\n")
    building.rename(target)
    return Dataset(target, manifest)


def _cached(path: Path) -> Dataset | None:
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return None
    return Dataset(path, json.loads(manifest.read_text()))


def prepare(sizes: list[int], rebuild: bool, pin: list[str], into: Path) -> list[Dataset]:
    """Private copies in `into` of the datasets of `sizes` sets, each built first if not cached
    (from the largest smaller one cached, if any). Holds a lock on the cache meanwhile: concurrent
    runs wait, then reuse what the first one built."""
    CACHE.mkdir(exist_ok=True)
    key = fingerprint()
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in CACHE.glob("synthea-*"):
            # built by other code, interrupted, or unwanted
            if rebuild or not stale.name.startswith(f"synthea-{key}-") or stale.suffix:
                shutil.rmtree(stale)
        copies = []
        for sets in sorted(sizes):
            data = _cached(CACHE / f"synthea-{key}-{sets}")
            if data is None:
                cached = (_cached(p) for p in CACHE.glob(f"synthea-{key}-*"))
                smaller = [d for d in cached if d is not None and d.manifest["sets"] < sets]
                base = max(smaller, key=lambda d: d.manifest["sets"], default=None)
                data = _build(CACHE / f"synthea-{key}-{sets}", base, sets, pin)
            started = time.monotonic()
            copy = into / data.path.name
            shutil.copytree(data.path, copy)
            took = time.monotonic() - started
            print(f"copied the {data.resources:,}-resource dataset in {took:.1f} s")
            copies.append(Dataset(copy, data.manifest))
        return copies
