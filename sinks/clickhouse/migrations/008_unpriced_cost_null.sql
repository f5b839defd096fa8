-- An unpriced request (cost_source = 'unknown') keeps cost_usd NULL, as its event says, and why in
-- cost_unknown_reason: never a silent zero. The rollups and session totals add it as 0 (and count it in
-- unpriced_requests), so every sum stays exact. The views are changed first, so no insert ever pushes a
-- NULL into their non-nullable totals; rows written before this migration get their NULL back.

ALTER TABLE spend_hourly_mv MODIFY QUERY
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
    sum(ifNull(cost_usd, 0)) AS cost_usd
FROM events
ARRAY JOIN arrayConcat(
    [('all', 'all'), ('key', key_scope), ('user', user), ('team', toString(team)), ('org', toString(org)),
     ('model', toString(model)), ('provider', toString(provider)), ('model_tier', toString(model_tier)),
     ('project', toString(project))],
    arrayMap(t -> ('tag', toString(t)), tags)) AS d
GROUP BY dimension, subject, hour;

ALTER TABLE spend_daily_mv MODIFY QUERY
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
    sum(ifNull(cost_usd, 0)) AS cost_usd
FROM events
ARRAY JOIN arrayConcat(
    [('all', 'all'), ('key', key_scope), ('user', user), ('team', toString(team)), ('org', toString(org)),
     ('model', toString(model)), ('provider', toString(provider)), ('model_tier', toString(model_tier)),
     ('project', toString(project))],
    arrayMap(t -> ('tag', toString(t)), tags)) AS d
GROUP BY dimension, subject, day;

ALTER TABLE session_totals_mv MODIFY QUERY
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
    sum(ifNull(cost_usd, 0)) AS cost_usd,
    groupUniqArray(toString(model)) AS models
FROM events
WHERE session_id != ''
GROUP BY session_id;

ALTER TABLE events MODIFY COLUMN cost_usd Nullable(Decimal(38, 12)) CODEC(ZSTD(1))
    COMMENT 'exact USD, rounded half-even to 12 decimals; NULL when cost_source = unknown (see cost_unknown_reason)';
ALTER TABLE events ADD COLUMN IF NOT EXISTS cost_unknown_reason String DEFAULT '' CODEC(ZSTD(1)) AFTER cost_source;
ALTER TABLE events UPDATE cost_usd = NULL WHERE cost_source = 'unknown' AND cost_usd IS NOT NULL SETTINGS mutations_sync = 1;
