"""`python -m seed_data load PATH...` and `python -m seed_data serve` (what `make run` runs)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from seed_data.loader import Credentials, LoaderError, Options, run


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m seed_data", description="Load FHIR data; serve with the demo scenario"
    )
    commands = root.add_subparsers(dest="command", required=True)
    load = commands.add_parser(
        "load",
        help="load transaction/batch/collection Bundles and NDJSON files",
        description=(
            "Load FHIR R4 Bundles (transaction, batch, collection) and NDJSON files (one resource "
            "per line). Directories are searched recursively for *.json and *.ndjson. Reloading "
            "the same files creates no duplicates and no new versions (see docs/loading.md)."
        ),
    )
    load.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories")
    load.add_argument(
        "--url",
        help="FHIR base of a running server (e.g. http://localhost:8080/fhir); without it the "
        "data goes into the configured database in this process (PHR_MONGODB_URI, or the "
        "embedded database in PHR_DATA_DIR)",
    )
    load.add_argument(
        "--client-id",
        default=os.environ.get("PHR_CLIENT_ID"),
        help="with --url: a backend client (client_credentials; default PHR_CLIENT_ID, secret in "
        "PHR_CLIENT_SECRET); or give a bearer token in PHR_ACCESS_TOKEN",
    )
    load.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="files loaded concurrently (default 2 with --url; 1 in-process, where the loader "
        "and the server share one thread)",
    )
    load.add_argument(
        "--batch-size",
        type=_positive,
        metavar="N",
        default=500,
        help="entries per Bundle posted for collection Bundles, batch Bundles and NDJSON "
        "(default 500; transaction Bundles are posted whole)",
    )
    load.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every resource and Bundle locally and print the report; write nothing",
    )
    load.add_argument("--quiet", action="store_true", help="no progress line")
    serve = commands.add_parser(
        "serve",
        help="serve the FHIR API and load the demo scenario into an empty database",
        description=(
            "Start the server like `python -m fhir_server serve` (the embedded database when "
            "PHR_MONGODB_URI is unset); once it is ready, load the demo scenario if the database "
            "holds no Patient yet."
        ),
    )
    serve.add_argument("--host", help="interface (PHR_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (PHR_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (PHR_WORKERS, default 1)")
    serve.add_argument("--no-demo", action="store_true", help="do not load the demo scenario")
    app = commands.add_parser(
        "app",
        help="run a small SMART app (the demo's registered client) against a running server",
        description="A standalone SMART launch with PKCE: log in as a demo user, approve, and "
        "see that patient's record read through the token.",
    )
    app.add_argument("--url", default="http://localhost:8080/fhir", help="FHIR base of the server")
    app.add_argument("--port", type=int, default=8081, help="port of the app (default 8081)")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "app":
        from seed_data.demo_app import run as run_app

        return run_app(args.url, args.port)
    if args.command == "serve":
        from seed_data.serve import serve

        code: int = serve(args.host, args.port, args.workers, demo=not args.no_demo)
        return code
    workers = args.workers or (2 if args.url else 1)
    options = Options(workers=workers, batch_size=args.batch_size, progress=not args.quiet)
    try:
        credentials = Credentials(
            token=os.environ.get("PHR_ACCESS_TOKEN"),
            client_id=args.client_id,
            client_secret=os.environ.get("PHR_CLIENT_SECRET"),
        )
        report = asyncio.run(
            run(args.paths, args.url, options, dry=args.dry_run, credentials=credentials)
        )
    except LoaderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    report.render(sys.stdout)
    return 0 if report.ok else 1
