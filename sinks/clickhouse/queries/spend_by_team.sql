-- Spend by team: requests, failures, tokens and exact dollars per team, biggest first.
-- From the hourly rollup (hour buckets starting in [since, until)); '(none)' is spend without a team.
SELECT
    if(subject = '', '(none)', subject) AS team,
    sum(requests) AS requests,
    sum(failures) AS failures,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS spend_usd,
    round(100 * toFloat64(sum(cost_usd)) / nullIf(sum(toFloat64(sum(cost_usd))) OVER (), 0), 1) AS share_pct
FROM spend_hourly
WHERE dimension = 'team'
  AND hour >= {since:DateTime64(3, 'UTC')} AND hour < {until:DateTime64(3, 'UTC')}
GROUP BY subject
ORDER BY spend_usd DESC
