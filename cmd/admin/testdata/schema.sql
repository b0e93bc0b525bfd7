-- The attempts and blocks tables as the admin reads them, for tests until
-- schema/ is committed. One statement per ";".
CREATE TABLE attempts (
    id String,
    ts DateTime,
    ip String,
    username String,
    result Enum8('success' = 1, 'failure' = 2, 'blocked' = 3),
    path String,
    user_agent String
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (ts, id);
CREATE TABLE blocks (
    id String,
    ts DateTime,
    kind Enum8('ip' = 1, 'username' = 2, 'pair' = 3),
    subject String,
    action Enum8('block' = 1, 'unblock' = 2),
    until DateTime,
    permanent UInt8,
    failures UInt32,
    reason String
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (ts, id);
