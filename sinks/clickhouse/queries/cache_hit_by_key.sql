-- Prompt-cache hit ratio by key: cached input tokens over all input tokens (busiest 50 keys).
-- A ratio that drops while input tokens stay steady is a cache that stopped hitting.
SELECT
    s.key AS key,
    d.alias AS alias,
    s.requests AS requests,
    s.input_tokens AS input_tokens,
    s.cache_read_tokens AS cache_read_tokens,
    s.cache_write_tokens AS cache_write_tokens,
    round(s.cache_read_tokens / nullIf(s.input_tokens, 0), 3) AS cache_hit_ratio,
    s.spend_usd AS spend_usd
FROM
(
    SELECT
        subject AS key,
        sum(requests) AS requests,
        sum(input_tokens) AS input_tokens,
        sum(cache_read_tokens) AS cache_read_tokens,
        sum(cache_write_tokens) AS cache_write_tokens,
        sum(cost_usd) AS spend_usd
    FROM spend_hourly
    WHERE dimension = 'key'
      AND hour >= {since:DateTime64(3, 'UTC')} AND hour < {until:DateTime64(3, 'UTC')}
    GROUP BY subject
    ORDER BY input_tokens DESC
    LIMIT 50
) AS s
LEFT JOIN
(
    SELECT key_scope, anyLast(api_key_alias) AS alias
    FROM key_directory
    GROUP BY key_scope
) AS d ON d.key_scope = s.key
ORDER BY input_tokens DESC
