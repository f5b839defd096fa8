-- Top 20 keys by spend (a key is its api_key_hash, or user:<user> when the gateway sent no key).
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
