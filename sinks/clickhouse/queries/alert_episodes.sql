-- Alert episodes, newest first: when each opened and resolved, and how long it stayed open.
SELECT
    detector,
    scope,
    subject,
    severity,
    opened_at,
    resolved_at,
    duration_s,
    repeats,
    last_summary
FROM alert_episodes
WHERE opened_at >= {since:DateTime64(3, 'UTC')} AND opened_at < {until:DateTime64(3, 'UTC')}
ORDER BY opened_at DESC
LIMIT 50
