-- Spend by day (UTC): requests, failures, tokens and exact dollars per calendar day.
SELECT
    day,
    sum(requests) AS requests,
    sum(failures) AS failures,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS spend_usd
FROM spend_daily
WHERE dimension = 'all'
  AND day >= toDate({since:DateTime64(3, 'UTC')}) AND day <= toDate({until:DateTime64(3, 'UTC')})
GROUP BY day
ORDER BY day
