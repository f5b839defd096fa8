-- Every alert notification (trigger, repeat, resolve) as the detectors emitted it.
CREATE TABLE IF NOT EXISTS alert_events
(
    dedup_key          String CODEC(ZSTD(1)),
    action             Enum8('trigger' = 1, 'repeat' = 2, 'resolve' = 3),
    detector           LowCardinality(String),
    scope              LowCardinality(String),
    subject            String CODEC(ZSTD(1)),
    severity           LowCardinality(String),
    fired_at           DateTime64(3, 'UTC'),
    episode_started_at Nullable(DateTime64(3, 'UTC')),
    summary            String CODEC(ZSTD(1)),
    observed           Float64,
    expected           Nullable(Float64),
    unit               LowCardinality(String),
    labels             Map(String, String),
    root_cause         String CODEC(ZSTD(3)) COMMENT 'JSON list of contributors',
    details            String CODEC(ZSTD(3)) COMMENT 'JSON object',
    kafka_topic        LowCardinality(String),
    kafka_partition    UInt32,
    kafka_offset       UInt64 CODEC(Delta(8), ZSTD(1)),
    inserted_at        DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX kafka_offset_minmax kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(fired_at)
ORDER BY (detector, dedup_key, fired_at)
TTL toDateTime(fired_at) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per alert episode: when it opened, when (if) it resolved, and for how long.
-- Still-open episodes have resolved_at NULL and duration_s measured up to now().
CREATE VIEW IF NOT EXISTS alert_episodes AS
SELECT
    dedup_key,
    any(detector) AS detector,
    any(scope) AS scope,
    any(subject) AS subject,
    max(severity) AS severity,
    coalesce(min(episode_started_at), minIfOrNull(fired_at, action = 'trigger'), min(fired_at)) AS opened_at,
    maxIfOrNull(fired_at, action = 'resolve') AS resolved_at,
    countIf(action = 'repeat') AS repeats,
    argMax(summary, fired_at) AS last_summary,
    dateDiff('second', opened_at, coalesce(resolved_at, now64(3))) AS duration_s
FROM alert_events
GROUP BY dedup_key;
