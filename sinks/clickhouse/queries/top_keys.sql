-- Top keys: the 20 keys with the most spend, with alias and team (a key is its api_key_hash,
-- or user:<user> when the gateway sent no key).
SELECT
    s.key AS key,
    d.alias AS alias,
    d.team AS team,
    s.requests AS requests,
    s.failures AS failures,
    s.tokens AS tokens,
    s.spend_usd AS spend_usd,
    s.share_pct AS share_pct
FROM
(
    SELECT
        subject AS key,
        sum(requests) AS requests,
        sum(failures) AS failures,
        sum(input_tokens) + sum(output_tokens) AS tokens,
        sum(cost_usd) AS spend_usd,
        round(100 * toFloat64(sum(cost_usd)) / nullIf(sum(toFloat64(sum(cost_usd))) OVER (), 0), 1) AS share_pct
    FROM spend_hourly
    WHERE dimension = 'key'
      AND hour >= {since:DateTime64(3, 'UTC')} AND hour < {until:DateTime64(3, 'UTC')}
    GROUP BY subject
    ORDER BY spend_usd DESC
    LIMIT 20
) AS s
LEFT JOIN
(
    SELECT key_scope, anyLast(api_key_alias) AS alias, anyLast(team) AS team
    FROM key_directory
    GROUP BY key_scope
) AS d ON d.key_scope = s.key
ORDER BY spend_usd DESC
