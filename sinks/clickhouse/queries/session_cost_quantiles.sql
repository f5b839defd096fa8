-- Session cost distribution: p50 and p90 (exact quantiles) of the spend per session.
SELECT
    count() AS sessions,
    quantileExact(0.5)(cost) AS p50_usd,
    quantileExact(0.9)(cost) AS p90_usd,
    max(cost) AS max_usd,
    sum(cost) AS total_usd
FROM
(
    SELECT session_id, sum(cost_usd) AS cost, min(first_seen) AS started, max(last_seen) AS ended
    FROM session_totals
    GROUP BY session_id
    HAVING ended >= {since:DateTime64(3, 'UTC')} AND started < {until:DateTime64(3, 'UTC')}
)
