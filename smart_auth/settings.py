"""Authorization-server settings, read from `PHR_*` environment variables.

The database and public-URL fields mirror `fhir_server.settings.Settings` (same variables) because
this package must not import `fhir_server`; `create_app()` passes its values in explicitly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Argon2Profile = Literal["RFC_9106_LOW_MEMORY", "RFC_9106_HIGH_MEMORY", "CHEAPEST"]


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHR_", extra="ignore")

    mongodb_uri: str | None = Field(default=None, description="MongoDB URI (same as the FHIR API)")
    data_dir: Path = Field(default=Path("var/db"), description="embedded database directory")
    db_name: str = Field(default="phr", description="database name")
    db_timeout_ms: int = Field(default=2000, description="database wait before failing (503)")
    port: int = Field(default=8080, description="port, for the default public base URL")
    base_url: str | None = Field(
        default=None, description="public base URL; default http://localhost:PORT"
    )
    issuer: str | None = Field(
        default=None, description="`iss` of tokens; default the public base URL"
    )
    access_token_lifetime: int = Field(
        default=300, ge=30, le=3600, description="access token lifetime, seconds"
    )
    refresh_token_lifetime: int = Field(
        default=90 * 86400, ge=60, description="offline_access refresh token lifetime, seconds"
    )
    authorization_code_lifetime: int = Field(
        default=60, ge=10, le=600, description="authorization code lifetime, seconds"
    )
    authorization_request_lifetime: int = Field(
        default=900, ge=60, le=3600, description="time to log in and approve, seconds"
    )
    launch_context_lifetime: int = Field(
        default=600, ge=30, le=86400, description="EHR launch value lifetime, seconds"
    )
    session_idle_timeout: int = Field(
        default=900, ge=60, description="login session ends after this much inactivity, seconds"
    )
    session_lifetime: int = Field(
        default=12 * 3600, ge=300, description="login session absolute lifetime, seconds"
    )
    login_max_failures: int = Field(
        default=10, ge=1, le=100, description="failed logins per account per window before lock"
    )
    login_max_failures_per_ip: int = Field(
        default=50, ge=1, description="failed logins per client IP per window before 429"
    )
    login_failure_window: int = Field(
        default=900, ge=60, description="window (and lock time) of the login throttle, seconds"
    )
    id_token_lifetime: int = Field(default=300, ge=30, description="id_token lifetime, seconds")
    key_rotation_period: int = Field(
        default=30 * 86400, ge=1, description="a signing key signs for this long, seconds"
    )
    key_cache_seconds: float = Field(
        default=60.0, ge=0, le=300, description="staleness bound of the in-process key cache"
    )
    revocation_staleness_seconds: float = Field(
        default=0.5, ge=0, le=1.0, description="staleness bound of the revoked-token cache"
    )
    clock_leeway: int = Field(default=30, ge=0, le=120, description="clock skew allowed, seconds")
    secret_key: SecretStr | None = Field(
        default=None,
        description="32 bytes, base64url, sealing signing keys and TOTP secrets at rest;"
        " default: the key file",
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="file of that key, created on first start; default `secret.key` beside"
        " the embedded database directory",
    )
    argon2_profile: Argon2Profile = Field(
        default="RFC_9106_LOW_MEMORY",
        description="argon2 parameters for client secrets and passwords; CHEAPEST only in tests",
    )

    def database_uri(self) -> str | None:
        """`PHR_MONGODB_URI`, else the URI a running embedded launcher left beside its data
        directory (`var/db.uri`), so the CLIs reach the database `make run` started."""
        if self.mongodb_uri:
            return self.mongodb_uri
        left = self.data_dir.with_name(self.data_dir.name + ".uri")
        return left.read_text().strip() or None if left.is_file() else None

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.data_dir.with_name("secret.key")

    @property
    def public_base(self) -> str:
        return (self.base_url or f"http://localhost:{self.port}").rstrip("/")

    @property
    def fhir_base(self) -> str:
        """The FHIR base URL, the `aud` of every access token (same rule as fhir_server)."""
        return self.public_base + "/fhir"

    @property
    def issuer_url(self) -> str:
        return (self.issuer or self.public_base).rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        """https public URL: `Secure` cookies with the `__Host-` prefix."""
        return self.public_base.startswith("https://")

    @property
    def token_endpoint(self) -> str:
        """The only `aud` accepted in client assertions (security catalogue TE-04)."""
        return self.public_base + "/auth/token"


@lru_cache
def get_auth_settings() -> AuthSettings:
    return AuthSettings()
