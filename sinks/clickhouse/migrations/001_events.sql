-- Raw normalised gateway events: one row per record of the canonical events topic.
-- A GatewayEvent carries no prompt or response text, so none is stored.
-- kafka_topic / kafka_partition / kafka_offset identify the source record: the sink
-- resumes from them after a crash so no record is written twice or skipped.
-- Retention: the TTL below is rewritten by `spendwatch db migrate` from clickhouse.raw_retention_days.
CREATE TABLE IF NOT EXISTS events
(
    event_id           String CODEC(ZSTD(1)),
    event_time         DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1)),
    gateway            LowCardinality(String),
    key_scope          String CODEC(ZSTD(1)) COMMENT 'api_key_hash, or user:<user> when no key hash is known',
    api_key_hash       String CODEC(ZSTD(1)),
    api_key_alias      String CODEC(ZSTD(1)),
    user               String CODEC(ZSTD(1)),
    team               LowCardinality(String),
    org                LowCardinality(String),
    project            LowCardinality(String),
    tags               Array(LowCardinality(String)),
    session_id         String CODEC(ZSTD(1)),
    model              LowCardinality(String),
    provider           LowCardinality(String),
    model_tier         LowCardinality(String) COMMENT 'frontier, standard, economy or unknown, at write time',
    status             Enum8('success' = 1, 'failure' = 2),
    error_type         LowCardinality(String),
    input_tokens       UInt64 CODEC(T64, ZSTD(1)) COMMENT 'all prompt tokens, cache reads and writes included',
    cache_read_tokens  UInt64 CODEC(T64, ZSTD(1)),
    cache_write_tokens UInt64 CODEC(T64, ZSTD(1)),
    output_tokens      UInt64 CODEC(T64, ZSTD(1)) COMMENT 'all completion tokens, reasoning included',
    reasoning_tokens   UInt64 CODEC(T64, ZSTD(1)),
    cost_usd           Decimal(38, 12) CODEC(ZSTD(1)) COMMENT 'exact USD; 0 when cost_source = unknown',
    cost_source        LowCardinality(String),
    latency_ms         Nullable(Float32),
    kafka_topic        LowCardinality(String),
    kafka_partition    UInt32,
    kafka_offset       UInt64 CODEC(Delta(8), ZSTD(1)),
    inserted_at        DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta(8), ZSTD(1)),
    INDEX kafka_offset_minmax kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (key_scope, event_time, event_id)
TTL toDateTime(event_time) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;
