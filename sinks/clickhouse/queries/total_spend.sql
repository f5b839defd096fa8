-- Total spend: the exact sum of every event's cost, from the raw events.
-- The reference figure: it equals the sum of cost_usd over the events produced, to the last digit.
SELECT
    count() AS requests,
    countIf(status = 'failure') AS failures,
    countIf(cost_source = 'unknown') AS unpriced_requests,
    sum(ifNull(cost_usd, 0)) AS spend_usd
FROM events
WHERE event_time >= {since:DateTime64(3, 'UTC')} AND event_time < {until:DateTime64(3, 'UTC')}
