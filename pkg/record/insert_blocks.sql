INSERT INTO defender.blocks (
    id, ts, ts_ms, type, kind, subject, until, permanent, failures, reason, gate,
    observe
)
