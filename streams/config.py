"""Kafka and stream-processing settings, including every topic name in one place."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TopicsConfig(BaseModel):
    """Topic names. ``raw`` is where gateways and the ingest service write; the rest are spendwatch's own."""

    model_config = ConfigDict(extra="forbid")

    raw: str = Field(default="spendwatch-raw", description="Gateway messages in any supported format, keyed by anything.")
    events: str = Field(default="spendwatch-events", description="Canonical GatewayEvent JSON, keyed by the key scope.")
    outcomes: str = Field(default="spendwatch-outcomes", description="Canonical OutcomeEvent JSON, keyed by the key scope.")
    alerts: str = Field(default="spendwatch-alerts", description="Alert JSON, keyed by dedup_key: the pagers' durable outbox.")
    dead_letters: str = Field(default="spendwatch-dead-letters", description="DeadLetter JSON: what failed, why, and the original bytes.")
    pager_log: str = Field(default="spendwatch-pager-log", description="Compacted: the pager's delivery log (what each receiver was told, open Slack messages, in-flight pages).")
    routed: str = Field(
        default="spendwatch-routed",
        description="Internal: parsed records re-keyed by detector state key (batched envelopes), so every record "
        "of one state key reaches the one worker that owns that state.",
    )


class KafkaSecurityConfig(BaseModel):
    """How spendwatch's Kafka clients authenticate and encrypt (managed Kafka: ``SASL_SSL``).

    Credentials come from the environment only: the YAML names the variables.
    """

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security.protocol. SASL_SSL for MSK, Confluent Cloud, Aiven and most "
        "managed clusters.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        default="PLAIN", description="SASL mechanism (with protocol SASL_PLAINTEXT or SASL_SSL). OAUTHBEARER: tokens "
        "from oauth_token_endpoint (OAuth 2.0 client credentials), e.g. Confluent Cloud OAuth, Strimzi with Keycloak.")
    sasl_username_env: str = Field(
        default="SPENDWATCH_KAFKA_USERNAME", description="Environment variable holding the SASL username (API key).")
    sasl_password_env: str = Field(
        default="SPENDWATCH_KAFKA_PASSWORD", description="Environment variable holding the SASL password (API secret).")
    ssl_cafile: str | None = Field(
        default=None, description="CA bundle (PEM) to verify the brokers with; unset: the system's trusted CAs.")
    ssl_certfile: str | None = Field(default=None, description="Client certificate (PEM), for mutual TLS.")
    ssl_keyfile: str | None = Field(default=None, description="Client private key (PEM), for mutual TLS.")
    ssl_keyfile_password_env: str | None = Field(
        default=None, description="Environment variable holding the client key's password, if it has one.")
    oauth_token_endpoint: str | None = Field(
        default=None, description="OAUTHBEARER: the identity provider's token URL (https; http only on loopback).")
    oauth_client_id_env: str = Field(
        default="SPENDWATCH_KAFKA_OAUTH_CLIENT_ID", description="OAUTHBEARER: variable holding the OAuth client id.")
    oauth_client_secret_env: str = Field(
        default="SPENDWATCH_KAFKA_OAUTH_CLIENT_SECRET",
        description="OAUTHBEARER: variable holding the OAuth client secret.")
    oauth_scope: str | None = Field(default=None, description="OAUTHBEARER: scope to request, if the provider needs one.")
    oauth_extensions: dict[str, str] = Field(
        default_factory=dict, description="OAUTHBEARER: SASL extensions sent with the token (Confluent Cloud: "
        "logicalCluster and identityPoolId).")

    @model_validator(mode="after")
    def _oauth_endpoint(self) -> KafkaSecurityConfig:
        if self.sasl_mechanism != "OAUTHBEARER" or not self.protocol.startswith("SASL_"):
            return self
        if not self.oauth_token_endpoint:
            raise ValueError("sasl_mechanism OAUTHBEARER needs oauth_token_endpoint (the identity provider's token URL)")
        url = urlsplit(self.oauth_token_endpoint)
        if not (url.scheme == "https" or (url.scheme == "http" and url.hostname in ("127.0.0.1", "::1", "localhost"))):
            raise ValueError("oauth_token_endpoint must be an https URL (the client secret is sent to it); "
                             "http is accepted only on loopback")
        return self


class KafkaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port]. Unset: spendwatch starts its embedded broker under data_dir.",
    )
    broker: Literal["kafka", "noida-db"] = Field(
        default="kafka",
        description="What serves bootstrap_servers. 'noida-db' (the local/test broker; set automatically for the "
        "embedded one) turns on client-side workarounds for its known bugs (spendwatch.broker_quirks); Apache Kafka "
        "needs none.",
    )
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    security: KafkaSecurityConfig = Field(default_factory=KafkaSecurityConfig)


class StreamsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(default=8, ge=1, description="Partitions of the source topics spendwatch creates.")
    app_id: str = Field(
        default="spendwatch",
        description="Faust app id: the consumer group, and the prefix of the state changelog topic.",
    )
    store: str = Field(
        default="auto",
        description="Faust table store: 'rocksdb://' (needs the 'rocksdb' extra, rocksdict: state survives restarts "
        "on local disk), 'memory://' (state rebuilt from the changelog at every start) or 'auto' (rocksdb when "
        "rocksdict is installed, else memory).",
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        default="exactly_once",
        description="exactly_once: state changes, alerts and consumer offsets commit in one Kafka transaction "
        "(no double count, no duplicate page after a crash). at_least_once only for brokers without transactions.",
    )
    batch_size: int = Field(default=5000, ge=1, description="Most messages taken from a stream per batch.")
    batch_within_s: float = Field(default=0.2, gt=0, description="Longest wait for a batch to fill, seconds.")
    commit_interval_s: float = Field(
        default=1.0, gt=0,
        description="How often hot in-memory detector state is flushed to the changelog and offsets committed "
        "(one transaction). Longer: fewer state writes, later alerts.",
    )
    producer_linger_ms: float = Field(
        default=10.0, ge=0,
        description="How long the worker's producers wait to fill a batch before sending it (Kafka linger.ms). "
        "The stages produce whole batches at once, so a few milliseconds turn thousands of produce requests "
        "into a handful; it adds at most this much to alert latency.",
    )
    producer_max_batch_size: int = Field(
        default=512 * 1024, ge=1024,
        description="Largest producer batch per topic partition, bytes (Kafka batch.size); at most the "
        "broker's message.max.bytes (1 MiB by default).",
    )
    dedup_window_records: int = Field(
        default=20_000, ge=0,
        description="Per raw partition: ids of the last this many records remembered, so a re-sent copy (a "
        "gateway's retry after a lost acknowledgement) is dropped instead of counted twice. Committed with the raw "
        "offsets in the state table, so a restarted or rebalanced worker keeps them (about 65 bytes per id in "
        "memory). 0: off.",
    )
    compression_type: Literal["zstd", "lz4", "snappy", "gzip", "none"] = Field(
        default="zstd",
        description="Compression of everything the worker produces (canonical events, envelopes, state changelog, "
        "alerts, dead letters). zstd shrinks the JSON and the state snapshots 3-6x for about a microsecond "
        "per record; every Kafka since 2.1 reads it.",
    )
    allowed_lateness_s: float = Field(
        default=30.0, ge=0,
        description="Event-time reorder window: records are held until the partition's stream time is this far "
        "past them, then processed in event-time order. Later records are still counted (never dropped) "
        "and reported by the late-events metric.",
    )
    idle_release_s: float = Field(
        default=5.0, gt=0,
        description="Wall-clock seconds without new records after which a partition releases its reorder buffer "
        "(so quiet traffic is not held back forever).",
    )
    replication_factor: int = Field(
        default=1, ge=1,
        description="Replication factor of the topics spendwatch creates when they do not exist (by the worker, "
        "the ingest service and the pager: source topics, the internal routed topic, the state changelog, the "
        "pager log). Use 3 on a production Kafka cluster.",
    )
    session_timeout_s: float = Field(
        default=30.0, gt=0,
        description="Consumer group session timeout: how long a silent (crashed) worker keeps its partitions "
        "before the group hands them to the others.",
    )
    static_membership: bool = Field(
        default=False,
        description="Join the consumer group with a static member id (the worker's node name: host and web "
        "port; Kafka static membership, KIP-345), so a worker restarted under the same name gets its partitions "
        "back without a rebalance. Without it a worker restarted under the same name still takes them back at "
        "once: it removes its dead previous incarnation from the group before joining.",
    )
    unassigned_unhealthy_s: float = Field(
        default=300.0, ge=0,
        description="How long a worker may wait for a partition assignment (joining the consumer group, or a "
        "rebalance that does not complete) before /healthz fails with 503, so that the orchestrator restarts it. "
        "Keep it above session_timeout_s + rebalance_timeout_s. An empty assignment (more workers than partitions) "
        "counts as assigned. 0: never fail.",
    )
    heartbeat_interval_s: float = Field(default=3.0, gt=0, description="Consumer group heartbeat interval.")
    rebalance_timeout_s: float = Field(
        default=60.0, gt=0, description="How long a rebalance waits for every worker to rejoin the group."
    )
    web_host: str = Field(default="127.0.0.1", description="Bind address of the worker's web server (/metrics, /healthz).")
    web_port: int = Field(default=6066, ge=0, le=65535, description="Port of the worker's web server; 0 picks a free one.")
