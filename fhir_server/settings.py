"""Server settings, read from `PHR_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHR_", extra="ignore")

    mongodb_uri: str | None = Field(
        default=None, description="MongoDB URI; unset = start the embedded SecantusDB"
    )
    db_name: str = Field(default="phr", description="database name")
    data_dir: Path = Field(default=Path("var/db"), description="embedded database directory")
    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8080, description="port to listen on")
    base_url: str | None = Field(
        default=None,
        description="public base URL (links, token audience); default http://localhost:PORT",
    )
    tls_certfile: Path | None = Field(
        default=None, description="PEM certificate chain: serve HTTPS (TLS 1.2+) instead of HTTP"
    )
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of the certificate")
    workers: int = Field(default=1, ge=1, description="worker processes")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, description="largest request body")
    max_json_depth: int = Field(default=64, description="deepest JSON nesting accepted")
    db_timeout_ms: int = Field(
        default=2000, description="how long a request waits for the database before 503"
    )
    history_count_default: int = Field(default=50, description="default page size of history")
    history_count_max: int = Field(default=1000, description="largest page size of history")
    search_count_default: int = Field(default=50, description="default page size of search")
    search_count_max: int = Field(default=1000, description="largest page size of search")
    search_max_candidates: int = Field(
        default=20000, description="most index candidates one search may examine (else 400)"
    )
    everything_count_default: int = Field(default=1000, description="page size of $everything")
    everything_count_max: int = Field(default=5000, description="largest page of $everything")
    bundle_max_entries: int = Field(default=20000, description="most entries in one Bundle")
    log_level: str = Field(default="INFO", description="log level")
    self_consent_age: int = Field(
        default=16, ge=0, le=25, description="age at which a guardian's consent for a minor lapses"
    )
    bench_routes: bool = Field(default=False, description="expose bare baseline routes (bench)")

    @property
    def public_base(self) -> str:
        scheme = "https" if self.tls_certfile else "http"
        return (self.base_url or f"{scheme}://localhost:{self.port}").rstrip("/")

    @property
    def fhir_base(self) -> str:
        return self.public_base + "/fhir"


@lru_cache
def get_settings() -> Settings:
    return Settings()
