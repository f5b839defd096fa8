-- Spend by model tier (frontier, standard, economy, unknown): the tier is priced at write time
-- from genai-prices, so a shift of traffic towards frontier models shows here.
SELECT
    subject AS model_tier,
    sum(requests) AS requests,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS spend_usd,
    round(100 * toFloat64(sum(cost_usd)) / nullIf(sum(toFloat64(sum(cost_usd))) OVER (), 0), 1) AS share_pct
FROM spend_hourly
WHERE dimension = 'model_tier'
  AND hour >= {since:DateTime64(3, 'UTC')} AND hour < {until:DateTime64(3, 'UTC')}
GROUP BY subject
ORDER BY spend_usd DESC
