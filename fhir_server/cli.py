"""`phr` / `python -m fhir_server`: serve the API, starting the embedded database when needed."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from types import FrameType

import uvicorn

from fhir_server.embedded import EmbeddedDatabase
from fhir_server.logs import configure_logging
from fhir_server.settings import Settings, get_settings

log = logging.getLogger("phr")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def serve(settings: Settings, host: str | None, port: int | None, workers: int | None) -> None:
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    os.environ["PHR_PORT"] = str(port)  # workers re-read settings; keep one truth
    embedded = None
    if not settings.mongodb_uri:
        embedded = EmbeddedDatabase(settings.data_dir).start()
        os.environ["PHR_MONGODB_URI"] = embedded.uri
        # uvicorn re-raises SIGTERM once it has shut down; by default that would end the process
        # before `finally` stops the database (which runs in its own session, so it would live on)
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    get_settings.cache_clear()
    try:
        uvicorn.run(
            "fhir_server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_config=None,
            proxy_headers=True,
            server_header=False,
            # Python's server context refuses anything older than TLS 1.2 (SMART checklist 2.1)
            ssl_certfile=settings.tls_certfile,
            ssl_keyfile=settings.tls_keyfile,
        )
    finally:
        if embedded is not None:
            embedded.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="phr", description="Personal health record server")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the FHIR API (embedded database by default)")
    run.add_argument("--host", help="interface (PHR_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port (PHR_PORT, default 8080)")
    run.add_argument("--workers", type=int, help="worker processes (PHR_WORKERS, default 1)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    if args.command == "serve":
        serve(settings, args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
