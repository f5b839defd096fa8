-- Top sessions: the 20 agent runs / conversations with the most spend, active in [since, until).
SELECT
    s.session_id AS session_id,
    d.alias AS key_alias,
    s.team AS team,
    s.first_seen AS first_seen,
    s.last_seen AS last_seen,
    s.duration_s AS duration_s,
    s.requests AS requests,
    s.spend_usd AS spend_usd,
    s.models AS models
FROM
(
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
) AS s
LEFT JOIN
(
    SELECT key_scope, anyLast(api_key_alias) AS alias
    FROM key_directory
    GROUP BY key_scope
) AS d ON d.key_scope = s.key
ORDER BY spend_usd DESC
