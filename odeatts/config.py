"""Settings: one object built from the environment, validated once, passed in.

Nothing here is read at import time. ``Settings()`` reads the environment when it
is called, so tests build their own and production builds exactly one in the worker.

The embedded defaults (a SQLite file and an in-process limiter) exist so a newcomer
gets speech on a bare machine; ``ODEATTS_ENV=production`` refuses them, because
limits kept in one process do not hold across a fleet of workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["DEFAULT_DATA_DIR", "DEV_PEPPER", "LogFormat", "Settings", "normalise_database_url"]

# Only ever used outside production; production refuses to start with it.
DEV_PEPPER = "odeatts-development-pepper-not-for-production"

MINIMAX_GLOBAL_URL = "https://api.minimax.io"

LogFormat = Literal["json", "text"]

# The embedded SQLite file's folder: the project's own var/, found from this package, so
# every command finds the same database whatever the current directory (a relative
# default gave each directory an operator stood in a fresh, unmigrated one).
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "var"


def normalise_database_url(url: str) -> str:
    """Accept the plain URLs managed Postgres services hand out.

    ``postgres://`` and ``postgresql://`` name no driver; we use psycopg 3.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _default_log_format(data: dict[str, Any]) -> LogFormat:
    return "json" if data.get("env") == "production" else "text"


def _secret_parts(value: str) -> list[str]:
    if "://" not in value:
        return [value]
    try:
        password = urlsplit(value).password
    except ValueError:  # not a URL after all (a bad port, say): mask the whole value
        return [value]
    return [password, unquote(password)] if password else []


class Settings(BaseSettings):
    """Everything the worker and the admin scripts can be told from outside."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment: no .env file, no secrets directory. The
        unused sources still walked every field (half of a 3.4 ms construction)."""
        return init_settings, env_settings

    env: Literal["development", "test", "production"] = Field(
        "development", validation_alias="ODEATTS_ENV"
    )
    # Secret because they carry passwords: repr, str and dumps show only asterisks.
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")
    # Several deployments (or test runs) can share one Redis under different prefixes.
    redis_prefix: str = Field("odeatts", min_length=1, validation_alias="ODEATTS_REDIS_PREFIX")
    data_dir: Path = Field(DEFAULT_DATA_DIR, validation_alias="ODEATTS_DATA_DIR")
    key_pepper: SecretStr | None = Field(None, validation_alias="ODEATTS_KEY_PEPPER")

    minimax_api_key: SecretStr | None = Field(None, validation_alias="MINIMAX_API_KEY")
    minimax_base_url: str = Field(MINIMAX_GLOBAL_URL, validation_alias="MINIMAX_BASE_URL")
    minimax_group_id: str | None = Field(None, validation_alias="MINIMAX_GROUP_ID")
    minimax_model: str = Field("speech-02-turbo", validation_alias="MINIMAX_MODEL")
    minimax_timeout_seconds: float = Field(60.0, gt=0, validation_alias="MINIMAX_TIMEOUT_SECONDS")
    minimax_max_retries: int = Field(2, ge=0, le=5, validation_alias="MINIMAX_MAX_RETRIES")
    minimax_retry_base_seconds: float = Field(
        0.5, ge=0, validation_alias="MINIMAX_RETRY_BASE_SECONDS"
    )

    # Our MiniMax account's limits, shared by every worker (0 disables a limit). A job
    # that finds the account busy waits up to upstream_max_wait_seconds for a slot.
    minimax_rpm_limit: int = Field(60, ge=0, validation_alias="MINIMAX_RPM_LIMIT")
    minimax_tpm_limit: int = Field(20_000, ge=0, validation_alias="MINIMAX_TPM_LIMIT")
    upstream_max_wait_seconds: float = Field(
        10.0, ge=0, validation_alias="ODEATTS_UPSTREAM_MAX_WAIT_SECONDS"
    )

    # What MiniMax charges us, for cost-against-revenue reports (USD per million billed
    # characters; third-party figures, set your contract's).
    price_turbo_per_million_chars: float = Field(
        60.0, ge=0, validation_alias="MINIMAX_PRICE_TURBO_PER_MILLION_CHARS"
    )
    price_hd_per_million_chars: float = Field(
        100.0, ge=0, validation_alias="MINIMAX_PRICE_HD_PER_MILLION_CHARS"
    )
    price_per_clone: float = Field(1.5, ge=0, validation_alias="MINIMAX_PRICE_PER_CLONE")

    # Object storage for large results (any S3-compatible endpoint). Same variable
    # names as RunPod's own upload helper, plus an explicit bucket.
    bucket_endpoint_url: str | None = Field(None, validation_alias="BUCKET_ENDPOINT_URL")
    bucket_access_key_id: str | None = Field(None, validation_alias="BUCKET_ACCESS_KEY_ID")
    bucket_secret_access_key: SecretStr | None = Field(
        None, validation_alias="BUCKET_SECRET_ACCESS_KEY"
    )
    bucket_name: str | None = Field(None, validation_alias="BUCKET_NAME")
    bucket_region: str = Field("us-east-1", validation_alias="BUCKET_REGION")
    url_expiry_seconds: int = Field(
        3600, ge=60, le=7 * 24 * 3600, validation_alias="ODEATTS_URL_EXPIRY_SECONDS"
    )
    # Audio above this many bytes goes to object storage: base64 adds a third, and RunPod
    # silently drops /run results above ~10 MB, so inline stays well under that.
    inline_max_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, le=7 * 1024 * 1024, validation_alias="ODEATTS_INLINE_MAX_BYTES"
    )
    # Streaming: each yielded chunk's raw size (base64 keeps it under RunPod's ~1 MB).
    stream_chunk_bytes: int = Field(
        256 * 1024, ge=4096, le=700 * 1024, validation_alias="ODEATTS_STREAM_CHUNK_BYTES"
    )
    # "plain": an async handler, output is an object. "stream": an async generator
    # handler (RunPod decides by the handler's type), /runsync output is a list.
    handler_mode: Literal["plain", "stream"] = Field("plain", validation_alias="ODEATTS_HANDLER")

    # Failed authentications (unknown, revoked or malformed keys) one key prefix, or one
    # malformed input, may have in a minute; more are refused as rate_limited before the
    # database is asked (docs/security.md, "Guessing keys").
    auth_failures_per_minute: int = Field(
        10, ge=1, le=10_000, validation_alias="ODEATTS_AUTH_FAILURES_PER_MINUTE"
    )

    # Per job. Longer than MiniMax's per-request limit is fine: such texts are split at
    # sentence boundaries into parts of at most part_chars and joined.
    max_text_chars: int = Field(50_000, gt=0, le=200_000, validation_alias="ODEATTS_MAX_TEXT_CHARS")
    part_chars: int = Field(3000, ge=200, lt=10_000, validation_alias="ODEATTS_PART_CHARS")
    part_parallelism: int = Field(3, ge=1, le=16, validation_alias="ODEATTS_PART_PARALLELISM")
    part_max_wait_seconds: float = Field(
        120.0, ge=0, validation_alias="ODEATTS_PART_MAX_WAIT_SECONDS"
    )
    # A lease or reservation older than this belongs to a worker that died: it lapses.
    # Keep it a little above RunPod's execution timeout for the endpoint.
    # Production refuses less than 30 s; tests may use a few seconds.
    lease_ttl_seconds: int = Field(330, ge=2, validation_alias="ODEATTS_LEASE_TTL_SECONDS")
    # Jobs one worker runs at once (RunPod's concurrency modifier), and MiniMax requests
    # at once. A job costs the worker's event loop about 20 ms of CPU, so a core serves some
    # 50 jobs a second; 32 behind MiniMax's 1-3 s stays under that (README "Benchmarks").
    max_concurrency: int = Field(32, ge=1, le=512, validation_alias="ODEATTS_MAX_CONCURRENCY")
    # Connections per worker, and Postgres transactions at once: the rest wait their turn
    # (resilience.Gate). A job holds one only for its two short transactions, so a few
    # serve dozens of jobs; measured, more only cost CPU (README "Benchmarks"). The pool
    # may open as many again for calls abandoned at their deadline: workers x 2 x this
    # must stay under Postgres' max_connections (100 by default).
    db_pool_size: int = Field(5, ge=1, le=50, validation_alias="ODEATTS_DB_POOL_SIZE")
    log_level: str = Field("INFO", validation_alias="ODEATTS_LOG_LEVEL")
    # json for log collectors in production, text for people elsewhere (empty = default).
    log_format: LogFormat = Field(
        default_factory=_default_log_format, validation_alias="ODEATTS_LOG_FORMAT"
    )

    # Deadlines (README "Failure behaviour"). A job has one budget; each call to a
    # dependency waits at most its own limit and never past the budget. A dependency
    # that fails `breaker_threshold` times in a row is taken as down: calls fail fast,
    # and one call probes every `breaker_cooldown_seconds`.
    # Unset: 30 s less than the lease TTL (300 s with the default TTL).
    job_timeout_seconds: float | None = Field(
        None, gt=0, validation_alias="ODEATTS_JOB_TIMEOUT_SECONDS"
    )
    db_timeout_seconds: float = Field(
        3.0, gt=0, le=60, validation_alias="ODEATTS_DB_TIMEOUT_SECONDS"
    )
    redis_timeout_seconds: float = Field(
        1.0, gt=0, le=30, validation_alias="ODEATTS_REDIS_TIMEOUT_SECONDS"
    )
    storage_timeout_seconds: float = Field(
        20.0, gt=0, le=300, validation_alias="ODEATTS_STORAGE_TIMEOUT_SECONDS"
    )
    # The audio cache (odeatts/audio_cache.py; README "Audio cache"). In the bucket when
    # one is configured, else under data_dir/cache. ``scope``: per user (default) or
    # shared by every user; ``charge``: the fraction of a hit's seconds charged.
    cache_enabled: bool = Field(True, validation_alias="ODEATTS_CACHE")
    cache_scope: Literal["user", "global"] = Field("user", validation_alias="ODEATTS_CACHE_SCOPE")
    cache_charge: float = Field(1.0, ge=0, le=1, validation_alias="ODEATTS_CACHE_CHARGE")
    cache_ttl_days: int = Field(30, ge=1, le=3650, validation_alias="ODEATTS_CACHE_TTL_DAYS")
    cache_max_chars: int = Field(
        10_000, ge=0, le=1_000_000, validation_alias="ODEATTS_CACHE_MAX_CHARS"
    )
    # Which misses are written: "repeat" (default) only a slot asked for before within
    # the TTL (a Redis marker says so; the embedded limiter remembers its own): a text
    # said once costs the store nothing; "first" every miss.
    cache_write: Literal["repeat", "first"] = Field(
        "repeat", validation_alias="ODEATTS_CACHE_WRITE"
    )
    # The local directory's cap (the bucket's size is its lifecycle rule's business).
    cache_max_mb: int = Field(1024, ge=1, validation_alias="ODEATTS_CACHE_MAX_MB")
    # A lookup waits at most this long, then the job is a miss; a write, four times it.
    cache_timeout_seconds: float = Field(
        0.5, gt=0, le=30, validation_alias="ODEATTS_CACHE_TIMEOUT_SECONDS"
    )
    # Entries written after the answer, at most this many at once; beyond, not written.
    cache_pending_writes: int = Field(
        16, ge=1, le=1000, validation_alias="ODEATTS_CACHE_PENDING_WRITES"
    )
    # When the charge of a job whose audio is made cannot be written, it is retried for
    # this long, then kept in the settle outbox (Redis) and applied later.
    settle_retry_seconds: float = Field(
        5.0, ge=0, le=60, validation_alias="ODEATTS_SETTLE_RETRY_SECONDS"
    )
    # An operator's command (admin CLI, the reset cron): the whole command's deadline,
    # on the client and as the server's statement_timeout; a row lock is waited for at
    # most `admin_lock_timeout_seconds` (reset-due runs beside live traffic, whose locks
    # last milliseconds: a longer wait means something is stuck, and the cron retries).
    admin_timeout_seconds: float = Field(
        120.0, gt=0, le=86_400, validation_alias="ODEATTS_ADMIN_TIMEOUT_SECONDS"
    )
    admin_lock_timeout_seconds: float = Field(
        10.0, gt=0, le=3_600, validation_alias="ODEATTS_ADMIN_LOCK_TIMEOUT_SECONDS"
    )
    breaker_threshold: int = Field(5, ge=1, le=1000, validation_alias="ODEATTS_BREAKER_THRESHOLD")
    breaker_cooldown_seconds: float = Field(
        2.0, gt=0, le=300, validation_alias="ODEATTS_BREAKER_COOLDOWN_SECONDS"
    )

    @field_validator("database_url", "redis_url")
    @classmethod
    def _normalise_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        url = value.get_secret_value() if value is not None else ""
        if not url:
            return None
        return SecretStr(normalise_database_url(url) if info.field_name == "database_url" else url)

    @field_validator("log_format", mode="before")
    @classmethod
    def _blank_log_format_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        return _default_log_format(info.data) if value in ("", None) else value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _blank_data_dir_is_default(cls, value: Any) -> Any:
        return DEFAULT_DATA_DIR if value in ("", None) else value

    @field_validator("minimax_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _job_ends_before_its_lease(self) -> Settings:
        # A job still running when its lease and reservation lapse could be charged
        # after another attempt took its place.
        if self.job_timeout_seconds and self.job_timeout_seconds >= self.lease_ttl_seconds:
            raise ValueError("ODEATTS_JOB_TIMEOUT_SECONDS must be below ODEATTS_LEASE_TTL_SECONDS")
        return self

    @model_validator(mode="after")
    def _refuse_embedded_in_production(self) -> Settings:
        if self.env != "production":
            return self
        missing = [
            name
            for name, ok in (
                (
                    "DATABASE_URL (a Postgres URL; the embedded SQLite is for development)",
                    self.database_url is not None
                    and not self.database_url.get_secret_value().startswith("sqlite"),
                ),
                (
                    "REDIS_URL (the in-process limiter cannot hold limits across workers)",
                    self.redis_url is not None,
                ),
                (
                    "ODEATTS_KEY_PEPPER (at least 32 characters)",
                    self.key_pepper is not None
                    and len(self.key_pepper.get_secret_value()) >= 32
                    and self.key_pepper.get_secret_value() != DEV_PEPPER,
                ),
                ("MINIMAX_API_KEY", self.minimax_api_key is not None),
                (
                    "ODEATTS_LEASE_TTL_SECONDS of at least 30 (above the endpoint's timeout)",
                    self.lease_ttl_seconds >= 30,
                ),
                (
                    "BUCKET_NAME and BUCKET_ENDPOINT_URL (large results need object storage)",
                    bool(self.bucket_name) and bool(self.bucket_endpoint_url),
                ),
            )
            if not ok
        ]
        if missing:
            raise ValueError(
                "ODEATTS_ENV=production refuses to start without: " + "; ".join(missing)
            )
        return self

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'odeatts.db').as_posix()}"

    @property
    def job_budget_seconds(self) -> float:
        """One job's whole time: what was set, or a margin under the lease TTL."""
        ttl = self.lease_ttl_seconds
        return self.job_timeout_seconds or max(ttl - 30, ttl / 2)

    @property
    def plain_redis_url(self) -> str | None:
        """The Redis URL with its password, for the client and nothing else."""
        return self.redis_url.get_secret_value() if self.redis_url is not None else None

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, so the log formatter can mask it verbatim.

        For a URL that is its password (raw and percent-decoded): the rest of the URL
        helps whoever reads the log, and the URL form itself is caught by a pattern.
        """
        found: list[str] = []
        for value in self.__dict__.values():
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.extend(_secret_parts(value.get_secret_value()))
        return found

    @property
    def pepper(self) -> bytes:
        secret = self.key_pepper.get_secret_value() if self.key_pepper else DEV_PEPPER
        return secret.encode()
