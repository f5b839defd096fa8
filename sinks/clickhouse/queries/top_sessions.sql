-- Top 20 sessions (agent runs, conversations) by spend, active in [since, until).
SELECT
    session_id,
    any(key_scope) AS key,
    any(team) AS team,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    dateDiff('second', first_seen, last_seen) AS duration_s,
    sum(requests) AS requests,
    sum(cost_usd) AS spend_usd,
    arrayStringConcat(groupUniqArrayArray(models), ', ') AS models
FROM session_totals
GROUP BY session_id
HAVING last_seen >= {since:DateTime64(3, 'UTC')} AND first_seen < {until:DateTime64(3, 'UTC')}
ORDER BY spend_usd DESC
LIMIT 20
