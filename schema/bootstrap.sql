-- Run before the migrations, every time: must stay idempotent.
CREATE DATABASE IF NOT EXISTS defender;

-- One row per applied migration. Two recorders starting at once may both
-- record a version: read it with DISTINCT.
CREATE TABLE IF NOT EXISTS defender.schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime
)
ENGINE = ReplacingMergeTree
ORDER BY version;
