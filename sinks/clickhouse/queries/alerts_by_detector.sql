-- Alerts by detector: episodes opened in [since, until), how many are still open, and how long
-- they stayed open (seconds; an open episode counts up to now).
SELECT
    detector,
    count() AS episodes,
    countIf(resolved_at IS NULL) AS open_now,
    sum(repeats) AS repeats,
    quantileExact(0.5)(duration_s) AS median_open_s,
    max(duration_s) AS longest_open_s,
    sum(duration_s) AS total_open_s
FROM alert_episodes
WHERE opened_at >= {since:DateTime64(3, 'UTC')} AND opened_at < {until:DateTime64(3, 'UTC')}
GROUP BY detector
ORDER BY episodes DESC
