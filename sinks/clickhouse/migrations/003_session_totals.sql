-- One row per agent run / conversation (session_id), folded by AggregatingMergeTree.
-- Query with GROUP BY session_id and min/max/sum/any to read merged totals.
CREATE TABLE IF NOT EXISTS session_totals
(
    session_id         String CODEC(ZSTD(1)),
    key_scope          SimpleAggregateFunction(any, String),
    user               SimpleAggregateFunction(any, String),
    team               SimpleAggregateFunction(any, String),
    first_seen         SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen          SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    requests           SimpleAggregateFunction(sum, UInt64),
    failures           SimpleAggregateFunction(sum, UInt64),
    input_tokens       SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens  SimpleAggregateFunction(sum, UInt64),
    output_tokens      SimpleAggregateFunction(sum, UInt64),
    cost_usd           SimpleAggregateFunction(sum, Decimal(38, 12)),
    models             SimpleAggregateFunction(groupUniqArrayArray, Array(String))
)
ENGINE = AggregatingMergeTree
ORDER BY session_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS session_totals_mv TO session_totals AS
SELECT
    session_id,
    any(key_scope) AS key_scope,
    any(user) AS user,
    any(toString(team)) AS team,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen,
    count() AS requests,
    countIf(status = 'failure') AS failures,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    groupUniqArray(toString(model)) AS models
FROM events
WHERE session_id != ''
GROUP BY session_id;
