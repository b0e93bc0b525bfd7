-- The clustered variant of ../001_init.sql: the same tables under the same
-- names, so the recorder's INSERTs and the admin's queries run unchanged,
-- but defender.attempts and defender.blocks are Distributed tables over
-- the cluster {{.Cluster}} (remote_servers in the server config), and the
-- rows live in defender.attempts_local and defender.blocks_local on every
-- shard.
--
-- Rows are sharded by cityHash64 of the event id (as text: 18.16 does not
-- hash a UUID directly): a redelivered event
-- lands on the shard that holds its first copy, where ReplacingMergeTree
-- collapses the two, and where the queries' LIMIT 1 BY id already sees
-- both. uniqExact(id) and LIMIT 1 BY id over the Distributed table then
-- count each id once.
--
-- Rendered by cluster.Statements: {{"{{"}}.OnCluster{{"}}"}} is " ON CLUSTER <name>" when
-- the DDL is distributed through ZooKeeper/Keeper, else empty (run the
-- statements on every node), and engine gives ReplicatedReplacingMergeTree
-- (replicas of a shard share a Keeper path by the {shard} and {replica}
-- macros) or, without Keeper, ReplacingMergeTree (one replica per shard).
CREATE DATABASE IF NOT EXISTS defender{{.OnCluster}};

CREATE TABLE IF NOT EXISTS defender.attempts_local{{.OnCluster}}
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
ENGINE = {{engine "attempts_local"}}
PARTITION BY toDate(ts)
ORDER BY (ts, ts_ms, id);

CREATE TABLE IF NOT EXISTS defender.attempts{{.OnCluster}} AS defender.attempts_local
ENGINE = Distributed({{.Cluster}}, defender, attempts_local, {{.ShardingKey}});

CREATE TABLE IF NOT EXISTS defender.blocks_local{{.OnCluster}}
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
ENGINE = {{engine "blocks_local"}}
PARTITION BY toDate(ts)
ORDER BY (ts, ts_ms, id);

CREATE TABLE IF NOT EXISTS defender.blocks{{.OnCluster}} AS defender.blocks_local
ENGINE = Distributed({{.Cluster}}, defender, blocks_local, {{.ShardingKey}});

-- The active parts of every shard, for readers that size their scans from
-- part metadata (record's query helpers read system.parts, which lists no
-- parts for a Distributed table): query it with table = 'attempts_local'.
CREATE TABLE IF NOT EXISTS defender.cluster_parts{{.OnCluster}} AS system.parts
ENGINE = Distributed({{.Cluster}}, system, parts);
