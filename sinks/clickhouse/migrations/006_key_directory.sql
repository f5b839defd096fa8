-- Who a key is: its alias, last user and team, first and last seen. Reports join it to show
-- "platform-gus6-agent (platform)" instead of a 64-character key hash.
CREATE TABLE IF NOT EXISTS key_directory
(
    key_scope     String CODEC(ZSTD(1)),
    api_key_alias SimpleAggregateFunction(anyLast, Nullable(String)),
    user          SimpleAggregateFunction(anyLast, Nullable(String)),
    team          SimpleAggregateFunction(anyLast, Nullable(String)),
    first_seen    SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen     SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY key_scope
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_directory_mv TO key_directory AS
SELECT
    key_scope,
    anyLast(nullIf(api_key_alias, '')) AS api_key_alias,
    anyLast(nullIf(user, '')) AS user,
    anyLast(nullIf(toString(team), '')) AS team,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM events
GROUP BY key_scope;
