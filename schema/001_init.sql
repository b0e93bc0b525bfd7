-- Login attempts and block transitions, one row per event.
--
-- Both tables are ReplacingMergeTree with the event id in the sorting key:
-- a redelivered event (same id, hence same ts) collapses into one row when
-- parts merge. Merges happen at ClickHouse's leisure, so queries must still
-- read each id once; pkg/record's query helpers do it with LIMIT 1 BY id
-- and uniqExact(id) rather than FINAL, which is slow on big tables.
--
-- Sorting key (ts, ts_ms, id): every admin query asks for a time range,
-- newest first, optionally narrowed by username, ip or result. Time first
-- lets the primary index skip to the range and the day partitions prune
-- whole days; filters on username or ip then scan that range only, which
-- the query helpers keep small by walking back in growing time windows.
-- (A key led by username would make one user's history cheap but every
-- "latest attempts" page a full scan.)
--
-- Time is split into ts (DateTime, seconds) and ts_ms (0..999) because
-- 18.16 has no DateTime64. The partition key is the day, toDate(ts), in the
-- server's time zone; retention drops whole past days
-- (ALTER TABLE ... DROP PARTITION) and deletes the rest of the boundary day
-- with a mutation.
CREATE TABLE IF NOT EXISTS defender.attempts
(
    id                UUID,
    ts                DateTime,
    ts_ms             UInt16,
    ip                String,
    username          String,
    result            Enum8('success' = 1, 'failure' = 2, 'blocked' = 3),
    blocked_by        Array(String),
    path              String,
    user_agent        String,
    gate              String,
    ip_failures       UInt32,
    username_failures UInt32,
    pair_failures     UInt32
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, ts_ms, id);

-- Blocks and unblocks. until is 0 (1970-01-01 00:00:00) when there is no
-- end: a permanent block, or an unblock.
CREATE TABLE IF NOT EXISTS defender.blocks
(
    id        UUID,
    ts        DateTime,
    ts_ms     UInt16,
    type      Enum8('block' = 1, 'unblock' = 2),
    kind      Enum8('ip' = 1, 'username' = 2, 'pair' = 3),
    subject   String,
    until     DateTime,
    permanent UInt8,
    failures  UInt32,
    reason    Enum8('auto' = 1, 'admin' = 2, 'blacklist' = 3),
    gate      String
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, ts_ms, id);
