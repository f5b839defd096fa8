-- Outcome events (a task accepted, a PR merged), attributed like spend so the two join.
CREATE TABLE IF NOT EXISTS outcomes
(
    outcome_id      String CODEC(ZSTD(1)),
    event_time      DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1)),
    kind            LowCardinality(String),
    value           Float64,
    key_scope       String CODEC(ZSTD(1)),
    api_key_hash    String CODEC(ZSTD(1)),
    user            String CODEC(ZSTD(1)),
    team            LowCardinality(String),
    session_id      String CODEC(ZSTD(1)),
    source          LowCardinality(String),
    attributes      Map(String, String),
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64 CODEC(Delta(8), ZSTD(1)),
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX kafka_offset_minmax kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (key_scope, event_time, outcome_id)
TTL toDateTime(event_time) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;
