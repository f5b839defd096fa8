-- Hourly and daily spend rollups for every dimension people slice by, fed by materialized
-- views on the raw insert (so a row is counted in a rollup exactly when it lands in events).
-- dimension is one of: all, key, user, team, org, model, provider, model_tier, project, tag.
-- An event without a team (user, org, project...) is counted under subject '' so every
-- dimension except tag sums to the same total as dimension 'all'.
-- SummingMergeTree folds rows in the background: always query with GROUP BY and sum().
CREATE TABLE IF NOT EXISTS spend_hourly
(
    dimension          LowCardinality(String),
    subject            String CODEC(ZSTD(1)),
    hour               DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    requests           UInt64 CODEC(T64, ZSTD(1)),
    failures           UInt64 CODEC(T64, ZSTD(1)),
    unpriced_requests  UInt64 CODEC(T64, ZSTD(1)),
    input_tokens       UInt64 CODEC(T64, ZSTD(1)),
    cache_read_tokens  UInt64 CODEC(T64, ZSTD(1)),
    cache_write_tokens UInt64 CODEC(T64, ZSTD(1)),
    output_tokens      UInt64 CODEC(T64, ZSTD(1)),
    reasoning_tokens   UInt64 CODEC(T64, ZSTD(1)),
    cost_usd           Decimal(38, 12) CODEC(ZSTD(1))
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (dimension, subject, hour)
TTL hour + INTERVAL 1100 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS spend_daily
(
    dimension          LowCardinality(String),
    subject            String CODEC(ZSTD(1)),
    day                Date CODEC(Delta(2), ZSTD(1)),
    requests           UInt64 CODEC(T64, ZSTD(1)),
    failures           UInt64 CODEC(T64, ZSTD(1)),
    unpriced_requests  UInt64 CODEC(T64, ZSTD(1)),
    input_tokens       UInt64 CODEC(T64, ZSTD(1)),
    cache_read_tokens  UInt64 CODEC(T64, ZSTD(1)),
    cache_write_tokens UInt64 CODEC(T64, ZSTD(1)),
    output_tokens      UInt64 CODEC(T64, ZSTD(1)),
    reasoning_tokens   UInt64 CODEC(T64, ZSTD(1)),
    cost_usd           Decimal(38, 12) CODEC(ZSTD(1))
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (dimension, subject, day)
TTL day + INTERVAL 1100 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS spend_hourly_mv TO spend_hourly AS
SELECT
    d.1 AS dimension,
    d.2 AS subject,
    toStartOfHour(event_time) AS hour,
    count() AS requests,
    countIf(status = 'failure') AS failures,
    countIf(cost_source = 'unknown') AS unpriced_requests,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd
FROM events
ARRAY JOIN arrayConcat(
    [('all', 'all'), ('key', key_scope), ('user', user), ('team', toString(team)), ('org', toString(org)),
     ('model', toString(model)), ('provider', toString(provider)), ('model_tier', toString(model_tier)),
     ('project', toString(project))],
    arrayMap(t -> ('tag', toString(t)), tags)) AS d
GROUP BY dimension, subject, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS spend_daily_mv TO spend_daily AS
SELECT
    d.1 AS dimension,
    d.2 AS subject,
    toDate(event_time) AS day,
    count() AS requests,
    countIf(status = 'failure') AS failures,
    countIf(cost_source = 'unknown') AS unpriced_requests,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd
FROM events
ARRAY JOIN arrayConcat(
    [('all', 'all'), ('key', key_scope), ('user', user), ('team', toString(team)), ('org', toString(org)),
     ('model', toString(model)), ('provider', toString(provider)), ('model_tier', toString(model_tier)),
     ('project', toString(project))],
    arrayMap(t -> ('tag', toString(t)), tags)) AS d
GROUP BY dimension, subject, day;
