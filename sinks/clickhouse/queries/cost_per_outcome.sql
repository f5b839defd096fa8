-- Cost per accepted outcome, by key: spend in the window over the outcomes (tasks accepted,
-- PRs merged...) the same key produced in it. Keys with outcomes but no spend show spend 0.
SELECT
    o.key_scope AS key,
    d.alias AS alias,
    o.outcomes AS outcomes,
    o.kinds AS kinds,
    coalesce(s.spend_usd, toDecimal128(0, 12)) AS spend_usd,
    coalesce(s.spend_usd, toDecimal128(0, 12)) / o.outcomes AS usd_per_outcome
FROM
(
    SELECT key_scope, count() AS outcomes, arrayStringConcat(groupUniqArray(toString(kind)), ', ') AS kinds
    FROM outcomes
    WHERE event_time >= {since:DateTime64(3, 'UTC')} AND event_time < {until:DateTime64(3, 'UTC')}
    GROUP BY key_scope
) AS o
LEFT JOIN
(
    SELECT subject AS key_scope, sum(cost_usd) AS spend_usd
    FROM spend_hourly
    WHERE dimension = 'key'
      AND hour >= {since:DateTime64(3, 'UTC')} AND hour < {until:DateTime64(3, 'UTC')}
    GROUP BY subject
) AS s USING (key_scope)
LEFT JOIN
(
    SELECT key_scope, anyLast(api_key_alias) AS alias
    FROM key_directory
    GROUP BY key_scope
) AS d USING (key_scope)
ORDER BY usd_per_outcome DESC
SETTINGS join_use_nulls = 1
