"""Configuration: one frozen pydantic-settings class read from ``ASTRO_*`` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.errors import ConfigError, describe_validation_error

ROLES = ("ingest", "embed", "alerts", "api")
DEFAULT_CATEGORIES = (
    "astro-ph,astro-ph.CO,astro-ph.EP,astro-ph.GA,astro-ph.HE,astro-ph.IM,astro-ph.SR"
)


class Settings(BaseSettings):
    """Every tunable of astrostream. Unset broker/Qdrant URLs mean the embedded default."""

    model_config = SettingsConfigDict(env_prefix="ASTRO_", frozen=True, extra="ignore")

    # Kafka
    kafka_url: str | None = Field(
        None,
        description="Kafka bootstrap servers, e.g. kafka://broker:9092. Unset: embedded Tansu.",
    )
    embedded_broker_port: int = Field(
        9092, ge=1, le=65535, description="Port of the embedded broker."
    )
    kafka_connect_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="How long a worker waits for Kafka at start."
    )
    app_id: str = Field("astrostream", description="Faust app id = Kafka consumer group.")
    topic_papers: str = Field("astro.papers", description="Topic of incoming papers.")
    topic_alerts: str = Field("astro.alerts", description="Topic of similarity alerts.")
    topic_deadletter: str = Field("astro.deadletter", description="Topic of rejected records.")
    topic_models: str = Field("astro.models", description="Topic of model updates.")
    topic_partitions: int = Field(4, ge=1, le=1024, description="Partitions for topics we create.")
    broker_session_timeout: float = Field(
        2.0, gt=0, description="Consumer session timeout (s). Tansu: 2; real Kafka: 60."
    )
    broker_heartbeat_interval: float = Field(0.5, gt=0, description="Consumer heartbeat (s).")
    broker_rebalance_timeout: float = Field(2.0, gt=0, description="Rebalance timeout (s).")

    # Qdrant
    qdrant_url: str | None = Field(
        None, description="Qdrant server URL. Unset: the embedded engine (ASTRO_QDRANT_ENGINE)."
    )
    qdrant_api_key: SecretStr | None = Field(None, description="Qdrant API key (server mode).")
    qdrant_engine: Literal["edge", "local"] = Field(
        "edge",
        description="Embedded engine without ASTRO_QDRANT_URL: Qdrant Edge, or qdrant-client's "
        "local mode (pure Python, brute force; the server API's stand-in in tests).",
    )
    qdrant_path: Path = Field(
        Path("data/edge"),
        description="Embedded store folder. Unset: `edge` (or `qdrant` for local mode) under "
        "ASTRO_DATA_DIR.",
    )
    qdrant_hnsw_ef: int = Field(
        128, ge=4, le=4096, description="HNSW search beam of the embedded engine (recall vs time)."
    )
    qdrant_timeout: float = Field(10.0, gt=0, description="Qdrant request timeout (s).")
    qdrant_connect_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="How long a worker waits for the Qdrant server at start."
    )
    collection_prefix: str = Field("astro", description="Prefix of the collection aliases.")

    # Model
    model: str = Field(
        "bundled", description="Model path or hub id; 'bundled' = all-MiniLM-L6-v2 shipped offline."
    )
    model_version: str | None = Field(
        None, description="Version tag stored with every vector. Default: derived from the model."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Encoder device.")
    backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16"] = Field(
        "auto",
        description=(
            "Encoder runtime. onnx/onnx-int8/openvino/openvino-bf16: the model exported once "
            "to ONNX (under ASTRO_DATA_DIR/onnx) and run by onnxruntime (fp32 or int8) or "
            "OpenVINO (fp32, or bf16 where the CPU has it natively), CPU only; their vectors "
            "get a version tag of their own (docs/performance.md). auto: openvino-bf16 on a "
            "CPU with native bf16 (AMX, AVX512-BF16), else onnx-int8; torch on a GPU."
        ),
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Sentences per encode batch. Unset: 64.",
    )
    batch_tokens: int | None = Field(
        None,
        ge=8,
        le=1_000_000,
        description=(
            "Padded tokens per encode batch, longest sentences first. Unset: 1024 for the "
            "ONNX backends on CPU, no cap for torch (docs/performance.md)."
        ),
    )
    batch_window_ms: int = Field(
        200, ge=0, le=60_000, description="Max wait to fill a micro-batch of papers (ms)."
    )
    take_max_papers: int = Field(32, ge=1, le=10_000, description="Papers per micro-batch.")
    max_seq_length: int = Field(256, ge=8, le=8192, description="Tokens per sentence.")

    # Text limits
    max_abstract_chars: int = Field(
        20_000, ge=100, description="Longer abstracts are dead-lettered."
    )
    max_sentences: int = Field(200, ge=1, description="Sentences kept per paper.")

    # HTTP API
    web_host: str = Field("127.0.0.1", description="API bind address.")
    web_port: int = Field(6066, ge=1, le=65535, description="API port.")
    api_token: SecretStr | None = Field(
        None,
        description=(
            "Operator bearer token (may do everything). Unset: generated once in "
            "<data_dir>/api-token, which the CLI on the same machine reads."
        ),
    )
    public_url: str | None = Field(
        None,
        description=(
            "Base URL of feed, unsubscribe and e-mail links. Default: http://127.0.0.1:web_port."
        ),
    )
    api_url: str | None = Field(
        None,
        description="Where CLI commands reach a running API. Default: http://web_host:web_port.",
    )

    # Alerts
    alert_aggregation: Literal["lse", "max", "topk"] = Field(
        "lse", description="Sentence-score aggregation per subscription (see docs/alerts.md)."
    )
    alert_lexical_weight: float = Field(
        1.0, ge=0, le=1, description="Weight of the TF-IDF score in an alert's paper score."
    )
    alert_percolate_limit: int = Field(
        256,
        ge=1,
        le=10_000,
        description=(
            "Interest vectors returned per new sentence: the subscriptions a paper can reach."
        ),
    )
    alert_sparse_limit: int = Field(
        1000,
        ge=0,
        le=10_000,
        description=(
            "Subscriptions a new paper reaches through its terms (sparse vectors), on top of "
            "the dense percolation; 0: dense only."
        ),
    )
    alert_lexical_margin: float = Field(
        0.8,
        ge=0,
        le=1,
        description=(
            "With the lexical score alone (ASTRO_ALERT_LEXICAL_WEIGHT 1): score only the "
            "reached subscriptions whose sparse score is at least this share of their "
            "threshold; 0: score every one reached."
        ),
    )
    alert_df_table: str = Field(
        "bundled",
        description=(
            "Prior document frequencies of the alerts' TF-IDF: 'bundled' (astro-ph), "
            "a table from `python -m services.alerts.lexicon`, or 'none'."
        ),
    )
    alert_dense_weight: float = Field(
        0.4,
        ge=0,
        le=1,
        description=(
            "Share of the shipped static model's dense channel in a subscription model's "
            "score (docs/alerts.md, 'The static dense channel'); 0: lexical only."
        ),
    )
    webhook_allow_private: bool = Field(
        False, description="Allow webhooks to loopback/private addresses (SSRF guard off)."
    )

    # E-mail digests
    smtp_url: SecretStr | None = Field(
        None,
        description=(
            "SMTP server for e-mail digests: smtp://user:pass@host:587?starttls=1 or "
            "smtps://user:pass@host:465. Unset: no digests are sent."
        ),
    )
    smtp_from: str = Field(
        "astrostream@localhost", description="From address of the e-mail digests."
    )
    digest_hour: int = Field(7, ge=0, le=23, description="UTC hour at which digests go out.")
    digest_weekday: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = Field("monday", description="Day of the weekly digests.")
    digest_interval_s: float | None = Field(
        None,
        gt=0,
        description=(
            "Testing aid: every digest is due this many seconds after the previous one, "
            "instead of daily/weekly at digest_hour."
        ),
    )

    # Process
    roles: str = Field("ingest,embed,alerts,api", description="Roles of this worker process.")
    data_dir: Path = Field(Path("data"), description="State folder (cursors, local Qdrant).")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Logging.")
    crash_at: Literal["", "after_alert_publish"] = Field(
        "",
        description="Testing only: exit abruptly (as on SIGKILL) at this point (crash-safety tests).",
    )

    # arXiv ingestion
    arxiv_api_url: str = Field("https://export.arxiv.org/api/query", description="arXiv API.")
    arxiv_rss_url: str = Field("https://rss.arxiv.org/atom/astro-ph", description="arXiv feed.")
    arxiv_oai_url: str = Field("https://oaipmh.arxiv.org/oai", description="arXiv OAI-PMH.")
    categories: str = Field(DEFAULT_CATEGORIES, description="Comma-separated arXiv categories.")
    ingest_min_interval_s: float = Field(3.0, ge=0, description="Min seconds between requests.")
    ingest_poll_interval_s: float = Field(900.0, gt=0, description="Seconds between light polls.")
    ingest_contact: str | None = Field(
        None, description="Contact (mailto) in the User-Agent, as arXiv asks of harvesters."
    )
    ingest_user_agent: str | None = Field(None, description="Override the whole User-Agent.")

    # Embedded broker storage (last: the README table keeps this order)
    broker_storage: str = Field(
        "postgres",
        description=(
            "Storage of the embedded broker: 'postgres' (a private PostgreSQL cluster under "
            "data_dir; memory with a warning if it cannot start), 'memory', or a Tansu "
            "storage URL (postgres://...)."
        ),
    )

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        roles = [r.strip() for r in value.split(",") if r.strip()]
        unknown = sorted(set(roles) - set(ROLES))
        if unknown or not roles:
            raise ValueError(f"unknown roles {unknown}; choose from {', '.join(ROLES)}")
        return ",".join(roles)

    @field_validator("collection_prefix", "model_version")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}", value):
            raise ValueError("use letters, digits, '_', '.', '-' (max 81 chars)")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("expected smtp://[user:pass@]host[:port][?starttls=1] or smtps://…")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value

    @field_validator("digest_weekday", mode="before")
    @classmethod
    def _weekday(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("alert_df_table")
    @classmethod
    def _df_table(cls, value: str) -> str:
        if value not in ("bundled", "none") and not Path(value).is_file():
            raise ValueError(f"no such file {value!r}; use 'bundled', 'none' or a table path")
        return value

    @model_validator(mode="after")
    def _qdrant_under_data_dir(self) -> Settings:
        """The embedded store lives under ASTRO_DATA_DIR unless ASTRO_QDRANT_PATH says otherwise."""
        if "qdrant_path" not in self.model_fields_set:
            folder = "edge" if self.qdrant_engine == "edge" else "qdrant"
            object.__setattr__(self, "qdrant_path", self.data_dir / folder)  # frozen model
        return self

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(self.roles.split(","))

    @property
    def category_list(self) -> list[str]:
        return [c.strip() for c in self.categories.split(",") if c.strip()]

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_url

    @property
    def broker_url(self) -> str:
        """Faust-style broker URL (``kafka://host:port``)."""
        url = self.kafka_url or f"kafka://127.0.0.1:{self.embedded_broker_port}"
        return url if "://" in url else f"kafka://{url}"

    @property
    def bootstrap_servers(self) -> str:
        """aiokafka-style bootstrap list (``host:port,host:port``)."""
        return ",".join(part.split("://", 1)[-1] for part in self.broker_url.split(","))

    @property
    def http_base(self) -> str:
        return (self.api_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def public_base(self) -> str:
        """Where people reach the API: links in feeds and e-mails start with it."""
        return (self.public_url or f"http://127.0.0.1:{self.web_port}").rstrip("/")


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into a message that names the variable.

    Raises:
        ConfigError: when a variable is invalid.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(describe_validation_error(exc, field_name=_variable))
        raise ConfigError(f"invalid configuration: {problems}") from None


def _variable(loc: tuple[int | str, ...]) -> str:
    return "ASTRO_" + "_".join(str(p) for p in loc).upper()


def markdown_table() -> str:
    """The configuration table of the README, generated from :class:`Settings`."""
    rows = ["| variable | default | description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "*(unset)*" if default is None else f"`{default}`"
        rows.append(f"| `ASTRO_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def write_readme_table(readme: Path) -> None:
    """Replace the block between the settings markers of ``readme`` with the table."""
    begin, end = "<!-- settings:begin -->\n", "\n<!-- settings:end -->"
    text = readme.read_text()
    start, stop = text.index(begin) + len(begin), text.index(end)
    readme.write_text(text[:start] + markdown_table() + text[stop:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_readme_table(Path(sys.argv[2] if len(sys.argv) > 2 else "README.md"))
    else:
        print(markdown_table())
