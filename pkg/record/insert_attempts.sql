INSERT INTO defender.attempts (
    id, ts, ts_ms, ip, username, result, blocked_by, path, user_agent, gate,
    ip_failures, username_failures, pair_failures, observe, shared, familiar
)
