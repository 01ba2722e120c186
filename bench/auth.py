"""`python -m bench.auth`: what the SMART authorization layer costs, as ratios against bare routes
in the same server and the same run (W1 with a bearer token, W6 token endpoint, W7
introspection); see docs/benchmarks-auth.md.

Baseline (B) and candidate (C) trials are interleaved in rounds (the order reverses every other
round). Codes, refresh tokens, introspected tokens and client assertions are single-use, so each
trial gets a fresh pool minted through the real `smart_auth` stores and wrk sends every request of
the pool at most once (bench/wrk.lua's `once` mode).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey
from pymongo.database import Database

from bench.harness import cpu_seconds, pinning
from bench.load import WRK_SCRIPT, Sample, parse_result
from bench.server import DB_NAME, ROOT, Server, serving
from fhir_server.embedded import EmbeddedDatabase
from smart_auth.accounts import AccountRegistry, LoginThrottle
from smart_auth.clients import ClientRegistry
from smart_auth.codes import AuthorizationCode, CodeStore
from smart_auth.hashing import SecretHasher
from smart_auth.refresh import GrantContext
from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings

TOKEN_LIFETIME = 3600  # seconds, PHR_ACCESS_TOKEN_LIFETIME of the server (and of W7's tokens)
OPS = ("query", "insert", "update", "delete", "command")
RESULTS = Path(__file__).parent / "results"
OBSERVATION = (Path(__file__).parent / "data" / "observation.json").read_bytes()
FORM = "application/x-www-form-urlencoded"
FHIR_JSON = "application/fhir+json"
MAX_ERROR_RATE = 0.001  # as bench/harness.py: a trial with more failed requests is invalid
TOLERANCE = 0.05  # the worst pair may miss the goal by this much
REDIRECT_URI = "http://127.0.0.1:9/callback"
SYSTEM_SCOPE = "system/*.cruds"  # a backend service that may do everything (as bench/server.py)
APP_SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"
CODE_LIFETIME = 600  # the longest PHR_AUTHORIZATION_CODE_LIFETIME allows: pools wait for their turn
# How each registered client authenticates (RFC 6749 section 2.3; `Final`, as bench/server.py).
PUBLIC: Final = "none"
BASIC: Final = "client_secret_basic"
KEY_JWT: Final = "private_key_jwt"
ASSERTION_LIFETIME = 290  # SMART: a client assertion's exp is at most five minutes ahead
# Requests per second each side is first assumed to reach, to size its first pool (later pools:
# the fastest rate seen so far on that side, times POOL_MARGIN).
# W6's B and C share a pool size (the larger side's), because SecantusDB's findAndModify scans the
# collection (docs/benchmarks-auth.md): the pool's size is part of the work.
FIRST_GUESS = {
    "w6-backend-B": 600.0,
    "w6-backend-C": 300.0,
    "w6-code": 150.0,
    "w6-refresh": 150.0,
    "w7-basic-C": 600.0,
    "w7-jwt-C": 300.0,
}
POOL_MARGIN = 2.5
# W6: the token endpoint is database-bound on SecantusDB, so 4 connections keep the server and the
# database busy; 2-second chunks keep the single-use collections small (Bench.measure).
W6_CONNECTIONS = 4
W6_CHUNK = 2
BODY_SEPARATOR = "\x1e"  # between the bodies of bench/wrk.lua's body file

# -- configuration and results ------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    workloads: list[str]
    duration: int
    pairs: int
    warmup: int
    connections: int
    seed: int
    pin: bool
    quick: bool


@dataclass(frozen=True)
class Target:
    """What one trial sends: `method` on `paths` (random) or each body of a fresh pool once."""

    key: str  # e.g. "w6-code-C"; also the pool-size guess's key
    label: str
    method: str
    paths: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    pool: Callable[[int], list[str]] | None = None  # n -> n single-use form bodies
    sizing: str = ""  # key of the rate that sizes the pools (FIRST_GUESS); default `key`
    connections: int = 0  # 0: --connections
    chunk: int = 0  # seconds per wrk run of a pooled trial (0: one run); see Bench.measure

    def __post_init__(self) -> None:
        if not self.sizing:
            object.__setattr__(self, "sizing", self.key)


@dataclass(frozen=True)
class Trial:
    sample: Sample
    server_cpu_s: float
    db_cpu_s: float
    pool: int | None  # single-use requests available (None: random from a fixed list)
    exhausted: bool = False  # a chunk sent its whole pool: its rate is a lower bound
    chunks: int = 1

    @property
    def valid(self) -> bool:
        return self.sample.error_rate <= MAX_ERROR_RATE and not self.exhausted

    @property
    def server_us(self) -> float:
        return 1e6 * self.server_cpu_s / self.sample.requests if self.sample.requests else 0.0

    @property
    def db_us(self) -> float:
        return 1e6 * self.db_cpu_s / self.sample.requests if self.sample.requests else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self.sample),
            "rps": self.sample.rps,
            "server_cpu_s": self.server_cpu_s,
            "db_cpu_s": self.db_cpu_s,
            "server_cpu_us_per_req": self.server_us,
            "db_cpu_us_per_req": self.db_us,
            "pool": self.pool,
            "exhausted": self.exhausted,
            "chunks": self.chunks,
            "valid": self.valid,
        }


@dataclass(frozen=True)
class Comparison:
    """One reported ratio: candidate `c` over baseline `b` (keys of targets of one group)."""

    key: str
    title: str
    b: str
    c: str
    goal: float


@dataclass
class Group:
    """Targets measured together in each round, and the ratios reported from them."""

    name: str
    title: str
    targets: list[Target]
    comparisons: list[Comparison]
    notes: list[str] = field(default_factory=list)
    rounds: list[dict[str, Trial]] = field(default_factory=list)
    ops: dict[str, dict[str, float]] = field(default_factory=dict)  # target -> per request

    def ratios(self, comparison: Comparison) -> list[float]:
        out = []
        for trials in self.rounds:
            b, c = trials[comparison.b].sample.rps, trials[comparison.c].sample.rps
            out.append(c / b if b else 0.0)
        return out

    def cpu_ratios(self, comparison: Comparison) -> list[float]:
        """B's server CPU per request over C's: the layer's own CPU cost, whatever the database
        and the load generator cost (as bench/harness.py reports it)."""
        out = []
        for trials in self.rounds:
            b, c = trials[comparison.b].server_us, trials[comparison.c].server_us
            out.append(b / c if c else 0.0)
        return out

    def valid(self, comparison: Comparison) -> bool:
        return all(t[comparison.b].valid and t[comparison.c].valid for t in self.rounds)

    def passed(self, comparison: Comparison) -> bool:
        ratios, goal = self.ratios(comparison), comparison.goal
        return (
            self.valid(comparison)
            and statistics.median(ratios) >= goal
            and min(ratios) >= goal - TOLERANCE
        )


# -- processes ----------------------------------------------------------------------------------


@dataclass
class Bench:
    config: Config
    server: Server
    db: EmbeddedDatabase
    workdir: Path
    load_pin: list[str]
    reset: Callable[[], None] | None = None  # empties the one-time collections
    started: float = field(default_factory=time.monotonic)
    admin: Database[Any] | None = None  # the database's admin, for its opcounters
    recent: dict[str, list[float]] = field(default_factory=dict)  # sizing -> chunk rates

    def db_ops(self, target: Target, count: int = 10) -> dict[str, float]:
        """Database operations per request of `target` (SecantusDB's `serverStatus`
        opcounters around `count` requests sent one at a time, outside any trial; `command`
        includes the drivers' periodic `hello`s, so it may be over by a fraction)."""
        if self.reset is not None:
            self.reset()
        bodies = target.pool(count) if target.pool else None
        self.settle()
        admin = self.admin
        assert admin is not None
        before = admin.command("serverStatus")["opcounters"]
        with httpx.Client(base_url=self.server.url, timeout=60) as client:
            for n in range(count):
                headers = dict(target.headers)
                if bodies:
                    headers["Content-Type"] = FORM
                path = target.paths[n % len(target.paths)]
                response = client.request(
                    target.method, path, content=bodies[n] if bodies else None, headers=headers
                )
                if response.status_code >= 400:
                    raise RuntimeError(f"{target.key} answered {response.status_code}")
        after = admin.command("serverStatus")["opcounters"]
        return {k: (after[k] - before[k]) / count for k in OPS}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def connections(self, target: Target) -> int:
        return target.connections or self.config.connections

    def wrk(self, target: Target, seconds: int, bodies: list[str] | None) -> Sample:
        name = target.key
        paths = self.workdir / f"{name}.paths"
        paths.write_text("\n".join(target.paths) + "\n")
        headers = self.workdir / f"{name}.headers"
        headers.write_text("".join(f"{k}: {v}\n" for k, v in target.headers))
        args = [target.method, str(paths), str(headers), "", "", "random"]
        if bodies:
            body = self.workdir / f"{name}.body"
            body.write_text(BODY_SEPARATOR.join(bodies))
            args[3:] = [str(body), FORM, "once"]
        opts = ["-t1", f"-c{self.connections(target)}", f"-d{seconds}s", "--timeout", "10s"]
        script = ["-s", str(WRK_SCRIPT)]
        command = [*self.load_pin, "wrk", *opts, *script, self.server.url, "--", *args]
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=True, cwd=ROOT
        )
        return parse_result(out.stdout)

    def settle(self) -> None:
        """Wait until the server has finished what the last trial left in flight (wrk stops
        counting at the deadline, the server does not stop working: 16 argon2 hashes take
        seconds): its CPU time stops growing, for at most 60 s."""
        pid = self.server.process.pid
        deadline = time.monotonic() + 60
        before = cpu_seconds(pid)
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = cpu_seconds(pid)
            if now - before < 0.02:  # under 10% of a CPU
                return
            before = now

    def _pool(self, target: Target, seconds: int) -> list[str] | None:
        """A fresh pool for `seconds` of `target`, in collections holding nothing else of the
        kind (`reset`: spent records removed as if their TTL had passed), sized from the best
        rate of the last few chunks of that kind."""
        if target.pool is None or not seconds:
            return None
        if self.reset is not None:
            self.reset()
        recent = self.recent.get(target.sizing) or [FIRST_GUESS[target.sizing]]
        size = math.ceil(max(recent) * seconds * POOL_MARGIN) + 2 * self.connections(target)
        return target.pool(size)

    def _chunk(self, target: Target, seconds: int) -> tuple[Sample, float, float, int | None]:
        """One wrk run with its own pool: (sample, server CPU s, database CPU s, pool size)."""
        bodies = self._pool(target, seconds)
        self.settle()
        assert self.db.process is not None
        server_pid, db_pid = self.server.process.pid, self.db.process.pid
        server_cpu, db_cpu = cpu_seconds(server_pid), cpu_seconds(db_pid)
        sample = self.wrk(target, seconds, bodies)
        server_cpu, db_cpu = cpu_seconds(server_pid) - server_cpu, cpu_seconds(db_pid) - db_cpu
        if bodies is not None:
            rate = sample.rps * (2 if sample.requests >= len(bodies) else 1)
            self.recent[target.sizing] = [*self.recent.get(target.sizing, [])[-5:], rate]
        return sample, server_cpu, db_cpu, len(bodies) if bodies is not None else None

    def measure(self, target: Target) -> Trial:
        """A warm-up (discarded) and a measured trial of `target`. A pooled target with
        `chunk` runs its trial as consecutive wrk runs of `chunk` seconds, each with its own
        small pool minted (outside the measurement) just before it: the findAndModify of a
        single-use record scans the whole collection on SecantusDB, so the pool's size is part
        of the work measured, and small pools keep it small and equal for B and C."""
        config = self.config
        seconds = config.duration
        step = target.chunk if target.pool and target.chunk else seconds
        if config.warmup:
            self._chunk(target, min(config.warmup, step))
        parts = []
        for done in range(0, seconds, step):
            for _attempt in range(3):  # a chunk that ran out of its pool is run again, larger
                part = self._chunk(target, min(step, seconds - done))
                if part[3] is None or part[0].requests < part[3]:
                    break
                print(f"  ({target.key}: a {step} s chunk ran out of its pool of {part[3]}; rerun)")
            parts.append(part)
        samples = [p[0] for p in parts]
        requests = sum(s.requests for s in samples)

        def weighted(metric: str) -> float:
            total = sum(float(getattr(s, metric)) * s.requests for s in samples)
            return total / max(requests, 1)

        sample = Sample(
            requests,
            sum(s.seconds for s in samples),
            sum(s.errors for s in samples),
            sum(s.status_errors for s in samples),
            weighted("p50_ms"),
            weighted("p95_ms"),
            weighted("p99_ms"),
        )
        pools = [p[3] for p in parts if p[3] is not None]
        return Trial(
            sample,
            sum(p[1] for p in parts),
            sum(p[2] for p in parts),
            sum(pools) if pools else None,
            exhausted=any(p[3] is not None and p[0].requests >= p[3] for p in parts),
            chunks=len(parts),
        )


# -- the authorization server's state: clients, an account, pools of single-use things -----------


def _challenge(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def _parallel(count: int, make: Callable[[int], str]) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(make, range(count)))


class Minter:
    """Registrations and single-use pools, written straight into the server's database with the
    same `smart_auth` objects the server uses (as `python -m smart_auth clients add` does)."""

    def __init__(self, server: Server, db_uri: str) -> None:
        self.server = server
        # A patient timeout: minting runs while the box may be loaded (the server keeps its own).
        self.settings = AuthSettings(
            mongodb_uri=db_uri, db_name=DB_NAME, port=server.port, db_timeout_ms=60_000
        )
        self.auth = AuthServices.create(self.settings)
        store = self.auth.store
        cheap = SecretHasher("CHEAPEST")  # only for registrations whose secret is never checked
        # As deployed: the server verifies with the parameters stored in the hash.
        self.profile = self.settings.argon2_profile
        deployed = SecretHasher(self.profile)
        app, _ = ClientRegistry(store, cheap).register(
            name="bench app",
            token_endpoint_auth_method=PUBLIC,
            scope=APP_SCOPE,
            redirect_uris=[REDIRECT_URI],
        )
        self.app_id = app.client_id
        self.patient = ""  # set by `seed`
        self.account = AccountRegistry(
            store, cheap, LoginThrottle(store, window=60, per_account=10, per_ip=10)
        )
        rs_basic, secret = ClientRegistry(store, deployed).register(
            name="bench resource server (secret)",
            token_endpoint_auth_method=BASIC,
            scope="system/*.rs",
            resource_server=True,
        )
        assert secret is not None
        self.basic = "Basic " + base64.b64encode(f"{rs_basic.client_id}:{secret}".encode()).decode()
        self.rs_key = ECKey.generate_key("P-384", auto_kid=True)
        rs_jwt, _ = ClientRegistry(store, cheap).register(
            name="bench resource server (private_key_jwt)",
            token_endpoint_auth_method=KEY_JWT,
            scope="system/*.rs",
            resource_server=True,
            jwks={"keys": [self.rs_key.as_dict(private=False)]},
        )
        self.rs_jwt_id = rs_jwt.client_id
        backend_jwt, _ = ClientRegistry(store, cheap).register(
            name="bench backend service (private_key_jwt)",
            token_endpoint_auth_method=KEY_JWT,
            scope="system/*.rs",
            jwks={"keys": [self.rs_key.as_dict(private=False)]},
        )
        self.backend_jwt_id = backend_jwt.client_id
        self.codes = CodeStore(store, CODE_LIFETIME)
        self.sub = ""
        backend, backend_secret = ClientRegistry(store, cheap).register(
            name="bench backend service", token_endpoint_auth_method=BASIC, scope=SYSTEM_SCOPE
        )
        assert backend_secret is not None
        self.backend = (backend.client_id, backend_secret)

    def system_token(self) -> tuple[tuple[str, str], ...]:
        """The `Authorization` header of a backend service: client_credentials, SYSTEM_SCOPE."""
        response = httpx.post(
            self.server.url + "/auth/token",
            data={"grant_type": "client_credentials", "scope": SYSTEM_SCOPE},
            auth=self.backend,
            timeout=30,
        )
        response.raise_for_status()
        return (("Authorization", f"Bearer {response.json()['access_token']}"),)

    def close(self) -> None:
        self.auth.close()

    def reset(self) -> None:
        """Remove every code, refresh-token record and assertion jti (spent or not), as
        if their TTL had passed, so each trial starts with the same collections: SecantusDB's
        findAndModify scans the whole collection (docs/benchmarks-auth.md)."""
        store = self.auth.store
        for collection in (store.codes, store.tokens, store.jti):
            collection.delete_many({})

    def user(self, patient: str) -> None:
        """The signed-in user the codes are for: a patient acting for itself."""
        self.patient = patient
        account = self.account.add(
            "bench-" + secrets.token_hex(4), secrets.token_urlsafe(16), f"Patient/{patient}"
        )
        self.sub = account.sub

    def _code(self, verifier: str) -> str:
        """What `interaction.py` stores after the user approves (`CodeStore.issue`)."""
        return self.codes.issue(
            AuthorizationCode(
                client_id=self.app_id,
                redirect_uri=REDIRECT_URI,
                code_challenge=_challenge(verifier),
                scope=APP_SCOPE,
                sub=self.sub,
                fhir_user=f"Patient/{self.patient}",
                patient=self.patient,
                nonce=secrets.token_urlsafe(8),
                auth_time=int(time.time()),
                grant=secrets.token_urlsafe(16),
                session=None,
                need_patient_banner=True,
            )
        )

    def code_bodies(self, count: int) -> list[str]:
        """Token requests redeeming `count` fresh codes (public client, PKCE S256)."""

        def one(_: int) -> str:
            verifier = secrets.token_urlsafe(48)
            form = {
                "grant_type": "authorization_code",
                "code": self._code(verifier),
                "redirect_uri": REDIRECT_URI,
                "client_id": self.app_id,
                "code_verifier": verifier,
            }
            return urlencode(form)

        return _parallel(count, one)

    def refresh_bodies(self, count: int) -> list[str]:
        """Refresh requests, each with the refresh token of its own grant, as the code exchange
        leaves them (`TokenService.mint`, `GrantStore.issue`; the code's spend, which commits
        the exchange, has nothing to spend here)."""
        tokens = self.auth.tokens
        grants = self.auth.grants

        def one(_: int) -> str:
            context = GrantContext(
                family=secrets.token_urlsafe(16),
                client_id=self.app_id,
                sub=self.sub,
                fhir_user=f"Patient/{self.patient}",
                patient=self.patient,
                need_patient_banner=True,
                session=None,
            )
            _token, claims = tokens.mint(
                audience=self.auth.fhir_base,
                client_id=self.app_id,
                subject=self.sub,
                scope=APP_SCOPE,
                patient=self.patient,
                fhir_user=context.fhir_user,
            )
            until = time.time() + self.settings.refresh_token_lifetime
            refresh = grants.issue(
                context, scope=APP_SCOPE, access=claims, refresh_until=until, commit=lambda: True
            )
            assert refresh is not None
            form = {"grant_type": "refresh_token", "refresh_token": refresh}
            return urlencode({**form, "client_id": self.app_id})

        return _parallel(count, one)

    def access_tokens(self, count: int) -> list[str]:
        """Distinct access tokens like the code exchange's (signed with the server's key)."""
        tokens = self.auth.tokens
        return [
            tokens.mint(
                audience=self.auth.fhir_base,
                client_id=self.app_id,
                subject=self.sub,
                scope=APP_SCOPE,
                patient=self.patient,
                fhir_user=f"Patient/{self.patient}",
            )[0]
            for _ in range(count)
        ]

    def introspect_bodies(self, count: int) -> list[str]:
        return [urlencode({"token": t}) for t in self.access_tokens(count)]

    def _assertion(self, client_id: str) -> dict[str, str]:
        """The form fields of a `private_key_jwt` client authentication: a fresh ES384 JWT."""
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": self.settings.token_endpoint,
            "exp": int(time.time()) + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": "ES384", "kid": self.rs_key.kid}
        return {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jwt.encode(header, claims, self.rs_key, algorithms=["ES384"]),
        }

    def assertion_bodies(self, count: int) -> list[str]:
        """Introspection requests authenticated by `private_key_jwt` (ES384 assertions)."""
        return [
            urlencode({"token": token, **self._assertion(self.rs_jwt_id)})
            for token in self.access_tokens(count)
        ]

    def backend_bodies(self, count: int) -> list[str]:
        """SMART Backend Services token requests (`client_credentials`, ES384 assertions)."""
        form = {"grant_type": "client_credentials", "scope": "system/Observation.rs"}
        return [urlencode({**form, **self._assertion(self.backend_jwt_id)}) for _ in range(count)]


# -- groups -------------------------------------------------------------------------------------


def seed(server: Server, minter: Minter, count: int) -> list[str]:
    """A Patient and `count` of its Observations, created through the FHIR API; their ids."""
    headers = {"Content-Type": FHIR_JSON, **dict(minter.system_token())}
    patient = {"resourceType": "Patient", "birthDate": "1980-01-01", "name": [{"family": "Bench"}]}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/fhir/Patient", content=json.dumps(patient), headers=headers)
        response.raise_for_status()
        pid = response.json()["id"]
        body = json.loads(OBSERVATION)
        body["subject"]["reference"] = f"Patient/{pid}"
        text = json.dumps(body).encode()
        minimal = {**headers, "Prefer": "return=minimal"}

        def create(_: int) -> str:
            for attempt in range(5):  # a loaded box may answer 503 (database timeout): retry
                response = client.post("/fhir/Observation", content=text, headers=minimal)
                if response.status_code != 503:
                    break
                time.sleep(1 + attempt)
            response.raise_for_status()
            return response.headers["Location"].split("/")[-3]

        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(create, range(count)))
    minter.user(pid)
    return ids


def patient_token(server: Server, minter: Minter) -> str:
    """A patient-scoped access token from the real code exchange."""
    response = httpx.post(
        server.url + "/auth/token",
        content=minter.code_bodies(1)[0],
        headers={"Content-Type": FORM},
        timeout=30,
    )
    response.raise_for_status()
    body = response.json()
    assert body["patient"] == minter.patient and "refresh_token" in body and "id_token" in body
    token: str = body["access_token"]
    return token


def w1(server: Server, minter: Minter, ids: list[str]) -> Group:
    patient = (("Authorization", f"Bearer {patient_token(server, minter)}"),)
    system = minter.system_token()
    fhir = tuple(f"/fhir/Observation/{i}" for i in ids)
    targets = [
        Target(
            "w1-unchecked-B",
            "GET /bare/_fhir/Observation/{id}",
            "GET",
            tuple(f"/bare/_fhir/Observation/{i}" for i in ids),
        ),
        Target(
            "w1-bare-B",
            "GET /bare/Observation/{id}",
            "GET",
            tuple(f"/bare/Observation/{i}" for i in ids),
        ),
        Target(
            "w1-patient-C", "GET /fhir/Observation/{id}, patient/*.rs token", "GET", fhir, patient
        ),
        Target(
            "w1-system-C", "GET /fhir/Observation/{id}, system/*.cruds token", "GET", fhir, system
        ),
    ]
    return Group(
        "w1",
        f"W1-auth read by id ({len(ids)} Observations of one Patient, random id per request)",
        targets,
        [
            Comparison(
                "w1-auth-patient",
                "auth alone, patient token: C vs the same handler without the token check",
                "w1-unchecked-B",
                "w1-patient-C",
                0.93,
            ),
            Comparison(
                "w1-auth-system",
                "auth alone, system token: C vs the same handler without the token check",
                "w1-unchecked-B",
                "w1-system-C",
                0.93,
            ),
            Comparison(
                "w1-read-patient",
                "patient token: C vs the bare read",
                "w1-bare-B",
                "w1-patient-C",
                0.85,
            ),
            Comparison(
                "w1-read-system",
                "system token: C vs the bare read",
                "w1-bare-B",
                "w1-system-C",
                0.85,
            ),
        ],
    )


def _check(server: Server, path: str, body: str, headers: dict[str, str], expect: str) -> None:
    """One request of a target outside the measurement: it must succeed, with `expect` in it."""
    response = httpx.post(
        server.url + path, content=body, headers={"Content-Type": FORM, **headers}, timeout=30
    )
    if response.status_code != 200 or expect not in response.text:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:500]}")


def w6(server: Server, minter: Minter) -> list[Group]:
    for path in ("/auth/token", "/bare/_auth/client-credentials"):
        _check(server, path, minter.backend_bodies(1)[0], {}, '"access_token"')
    for path in ("/auth/token", "/bare/_auth/code"):
        _check(server, path, minter.code_bodies(1)[0], {}, '"id_token"')
    for path in ("/auth/token", "/bare/_auth/refresh"):
        _check(server, path, minter.refresh_bodies(1)[0], {}, '"refresh_token"')
    return [
        Group(
            "w6-backend",
            "W6 token endpoint: client_credentials by a SMART backend service (private_key_jwt,"
            " ES384 assertion; access token ES256), performance.md's W6 workload proper",
            [
                Target(
                    "w6-backend-B",
                    "POST /bare/_auth/client-credentials",
                    "POST",
                    ("/bare/_auth/client-credentials",),
                    pool=minter.backend_bodies,
                ),
                Target(
                    "w6-backend-C",
                    "POST /auth/token grant_type=client_credentials",
                    "POST",
                    ("/auth/token",),
                    pool=minter.backend_bodies,
                ),
            ],
            [
                Comparison(
                    "w6-backend",
                    "client_credentials vs the crypto ceiling (assertion verify + token sign)",
                    "w6-backend-B",
                    "w6-backend-C",
                    0.70,
                )
            ],
        ),
        Group(
            "w6-code",
            "W6 token endpoint: authorization_code exchange (public client, PKCE S256; access token"
            " ES256, id_token RS256, refresh token)",
            [
                Target(
                    "w6-code-B",
                    "POST /bare/_auth/code",
                    "POST",
                    ("/bare/_auth/code",),
                    pool=minter.code_bodies,
                    sizing="w6-code",
                    connections=W6_CONNECTIONS,
                    chunk=W6_CHUNK,
                ),
                Target(
                    "w6-code-C",
                    "POST /auth/token grant_type=authorization_code",
                    "POST",
                    ("/auth/token",),
                    pool=minter.code_bodies,
                    sizing="w6-code",
                    connections=W6_CONNECTIONS,
                    chunk=W6_CHUNK,
                ),
            ],
            [
                Comparison(
                    "w6-code",
                    "code exchange vs bare crypto + 2 writes",
                    "w6-code-B",
                    "w6-code-C",
                    0.70,
                )
            ],
        ),
        Group(
            "w6-refresh",
            "W6 token endpoint: refresh_token grant (public client; rotation; access token ES256)",
            [
                Target(
                    "w6-refresh-B",
                    "POST /bare/_auth/refresh",
                    "POST",
                    ("/bare/_auth/refresh",),
                    pool=minter.refresh_bodies,
                    sizing="w6-refresh",
                    connections=W6_CONNECTIONS,
                    chunk=W6_CHUNK,
                ),
                Target(
                    "w6-refresh-C",
                    "POST /auth/token grant_type=refresh_token",
                    "POST",
                    ("/auth/token",),
                    pool=minter.refresh_bodies,
                    sizing="w6-refresh",
                    connections=W6_CONNECTIONS,
                    chunk=W6_CHUNK,
                ),
            ],
            [
                Comparison(
                    "w6-refresh",
                    "refresh grant vs bare crypto + 2 writes",
                    "w6-refresh-B",
                    "w6-refresh-C",
                    0.70,
                )
            ],
        ),
    ]


def w7(server: Server, minter: Minter, ids: list[str]) -> Group:
    basic = {"Authorization": minter.basic}
    _check(server, "/auth/introspect", minter.introspect_bodies(1)[0], basic, '"active":true')
    _check(server, "/auth/introspect", minter.assertion_bodies(1)[0], {}, '"active":true')
    return Group(
        "w7",
        "W7 introspection (RFC 7662) by a resource-server client, a never-seen access token per"
        " request, against performance.md's baseline: the W1 bare read (one keyed lookup)",
        [
            Target(
                "w7-B",
                "GET /bare/Observation/{id}",
                "GET",
                tuple(f"/bare/Observation/{i}" for i in ids),
            ),
            Target(
                "w7-jwt-C",
                "POST /auth/introspect, private_key_jwt (ES384 assertion)",
                "POST",
                ("/auth/introspect",),
                pool=minter.assertion_bodies,
            ),
            Target(
                "w7-basic-C",
                f"POST /auth/introspect, client_secret_basic (argon2 {minter.profile})",
                "POST",
                ("/auth/introspect",),
                tuple(basic.items()),
                pool=minter.introspect_bodies,
            ),
        ],
        [
            Comparison(
                "w7-jwt",
                "private_key_jwt client vs the W1 bare read",
                "w7-B",
                "w7-jwt-C",
                0.80,
            ),
            Comparison(
                "w7-basic",
                "client_secret_basic client vs the W1 bare read",
                "w7-B",
                "w7-basic-C",
                0.80,
            ),
        ],
    )


# -- the run ------------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def _flag(trial: Trial) -> str:
    if trial.exhausted:
        return "  INVALID (pool exhausted)"
    return "" if trial.valid else "  INVALID (errors)"


def run_group(bench: Bench, group: Group) -> None:
    print(f"\n{group.title}")
    print(f"  [{bench.elapsed():.0f} s into the run]")
    for target in group.targets:
        conns = bench.connections(target)
        print(f"  {target.key:<15} {target.label}, {conns} connections")
    print("  database operations per request (10 sent one at a time):")
    for target in group.targets:
        ops = group.ops[target.key] = bench.db_ops(target)
        print(f"  {target.key:<15} " + ", ".join(f"{k} {v:.1f}" for k, v in ops.items()))
    print("  round target            req/s   p50/p95/p99 ms        server/DB CPU us/req")
    for number in range(1, bench.config.pairs + 1):
        order = group.targets if number % 2 else list(reversed(group.targets))
        trials: dict[str, Trial] = {}
        for target in order:
            trial = trials[target.key] = bench.measure(target)
            s = trial.sample
            print(
                f"  {number:>5} {target.key:<15} {s.rps:>8.1f}   {s.p50_ms:.2f}/{s.p95_ms:.2f}/"
                f"{s.p99_ms:.2f}{'':<6} {trial.server_us:>7.0f}/{trial.db_us:<7.0f}{_flag(trial)}"
            )
        group.rounds.append(trials)
    for target in group.targets:
        trials_of = [r[target.key] for r in group.rounds]
        rps = statistics.median(t.sample.rps for t in trials_of)
        server = statistics.median(t.server_us for t in trials_of)
        db = statistics.median(t.db_us for t in trials_of)
        print(
            f"  median {target.key}: {rps:.1f} req/s, server CPU {server:.0f} us/req,"
            f" database CPU {db:.0f} us/req"
        )
    for comparison in group.comparisons:
        ratios = group.ratios(comparison)
        verdict = (
            "PASS" if group.passed(comparison) else "FAIL" if group.valid(comparison) else "INVALID"
        )
        b = statistics.median(r[comparison.b].sample.rps for r in group.rounds)
        c = statistics.median(r[comparison.c].sample.rps for r in group.rounds)
        print(
            f"  {comparison.key} server CPU per request, B/C:"
            f" {_spread(group.cpu_ratios(comparison))}"
        )
        print(
            f"{comparison.key} ratio C/B: {_spread(ratios)} goal >= {comparison.goal:.2f}:"
            f" {verdict}  (B {b:.1f}, C {c:.1f} req/s; {comparison.title})"
        )


def summary(groups: list[Group]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group in groups:
        for comparison in group.comparisons:
            ratios = group.ratios(comparison)
            out[comparison.key] = {
                "title": comparison.title,
                "group": group.title,
                "goal": comparison.goal,
                "baseline": next(t.label for t in group.targets if t.key == comparison.b),
                "candidate": next(t.label for t in group.targets if t.key == comparison.c),
                "b_rps_median": statistics.median(r[comparison.b].sample.rps for r in group.rounds),
                "c_rps_median": statistics.median(r[comparison.c].sample.rps for r in group.rounds),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "ratios": ratios,
                "server_cpu_ratios": group.cpu_ratios(comparison),
                "server_cpu_ratio_median": statistics.median(group.cpu_ratios(comparison)),
                "valid": group.valid(comparison),
                "passed": group.passed(comparison),
            }
    return out


def print_table(groups: list[Group]) -> None:
    print(
        "\n| ratio | B req/s | C req/s | C/B median (min-max) | goal | verdict | server CPU B/C |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key, row in summary(groups).items():
        verdict = "PASS" if row["passed"] else "FAIL" if row["valid"] else "INVALID"
        print(
            f"| {key} | {row['b_rps_median']:,.1f} | {row['c_rps_median']:,.1f} |"
            f" {row['ratio_median']:.3f} ({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) |"
            f" >= {row['goal']:.2f} | {verdict} | {row['server_cpu_ratio_median']:.3f} |"
        )


@contextmanager
def _pinned_run(config: Config) -> Iterator[tuple[Bench, list[str], str]]:
    load_pin, server_pin, note = pinning(config.pin)
    with tempfile.TemporaryDirectory(prefix="phr-bench-auth-") as tmp:
        workdir = Path(tmp)
        with serving(workdir / "db", workdir / "server.log", server_pin) as (db, server):
            yield Bench(config, server, db, workdir, load_pin), server_pin, note


def run(config: Config, argv: list[str]) -> int:
    # The W1 tokens are minted once, before the W1 trials (minutes): as bench/server.py does.
    os.environ["PHR_ACCESS_TOKEN_LIFETIME"] = str(TOKEN_LIFETIME)
    if shutil.which("wrk") is None:
        print("python -m bench.auth needs wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    started, clock = datetime.now(UTC), time.monotonic()
    print(f"uptime: {_uptime()}")
    groups: list[Group] = []
    with _pinned_run(config) as (bench, _, note):
        print(f"load generator: wrk, {config.connections} connections; pinning: {note}")
        print(
            f"{config.pairs} rounds of {config.duration} s trials (+{config.warmup} s warm-up"
            " each); B and C alternate, the order reversing every other round"
        )
        minter = Minter(bench.server, bench.db.uri)
        bench.reset = minter.reset
        bench.admin = minter.auth.store.client.admin
        print(f"argon2 profile (PHR_ARGON2_PROFILE): {minter.profile}")
        try:
            ids = seed(bench.server, minter, config.seed)
            print(f"seeded a Patient and {len(ids)} Observations [{bench.elapsed():.0f} s]")
            if "w1" in config.workloads:
                groups.append(w1(bench.server, minter, ids))
            if "w6" in config.workloads:
                groups.extend(w6(bench.server, minter))
            if "w7" in config.workloads:
                groups.append(w7(bench.server, minter, ids))
            for group in groups:
                run_group(bench, group)
        finally:
            minter.close()
    print_table(groups)
    report = {
        "started": started.isoformat(),
        "command": ["python", "-m", "bench.auth", *argv],
        "uptime": _uptime(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "pinning": note,
        "argon2_profile": minter.profile,
        "config": asdict(config),
        "ratios": summary(groups),
        "trials": {
            g.name: [{k: t.summary() for k, t in r.items()} for r in g.rounds] for g in groups
        },
        "db_ops_per_request": {g.name: g.ops for g in groups},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"auth-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {out} ({time.monotonic() - clock:.0f} s in all)")
    valid = all(g.valid(c) for g in groups for c in g.comparisons)
    return 0 if valid else 1


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


WORKLOADS = ("w1", "w6", "w7")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.auth", description=__doc__)
    parser.add_argument("--workload", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured trial")
    parser.add_argument("--pairs", type=int, default=3, help="rounds (B/C pairs per ratio)")
    parser.add_argument("--warmup", type=int, default=2, help="discarded seconds before each trial")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--seed", type=int, default=500, help="Observations seeded for W1")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (~75 s): 2 rounds of 1 s trials, no warm-up, seed 100",
    )
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    if args.quick:
        args.duration, args.pairs, args.warmup, args.seed = 1, 2, 0, 100
    if min(args.duration, args.pairs, args.connections, args.seed) < 1 or args.warmup < 0:
        parser.error("--duration, --pairs, --connections and --seed must be >= 1")
    config = Config(
        workloads=args.workload,
        duration=args.duration,
        pairs=args.pairs,
        warmup=args.warmup,
        connections=args.connections,
        seed=args.seed,
        pin=not args.no_pin,
        quick=args.quick,
    )
    # SIGTERM unwinds like Ctrl-C, so the server and the database are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(config, argv)


if __name__ == "__main__":
    sys.exit(main())
