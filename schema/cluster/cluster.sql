-- The statements only the clustered schema has, as text/template blocks
-- that Statements renders around the tables it derives from package
-- schema's migrations. .OnCluster is " ON CLUSTER <name>" when the DDL is
-- distributed through ZooKeeper/Keeper, else empty (run the statements on
-- every node); .Cluster is the cluster's name in remote_servers.

-- Before the tables.
{{define "database"}}
CREATE DATABASE IF NOT EXISTS defender{{.OnCluster}};
{{end}}

-- After each table's <table>_local: the table itself, under its own name,
-- a Distributed table over <table>_local on every shard. Rows are sharded
-- by cityHash64 of the event id (as text: 18.16 does not hash a UUID
-- directly): a redelivered event lands on the shard that holds its first
-- copy, where ReplacingMergeTree collapses the two and where the queries'
-- LIMIT 1 BY id already sees both. uniqExact(id) and LIMIT 1 BY id over
-- the Distributed table then count each id once.
{{define "distributed"}}
CREATE TABLE IF NOT EXISTS defender.{{.Table}}{{.OnCluster}} AS defender.{{.Table}}_local
ENGINE = Distributed({{.Cluster}}, defender, {{.Table}}_local, cityHash64(toString(id)));
{{end}}

-- After each materialized view's <view>_local: the view's rows under its
-- own name, a Distributed table over <view>_local on every shard. Nothing
-- is inserted into it, so it needs no sharding key.
{{define "view"}}
CREATE TABLE IF NOT EXISTS defender.{{.Table}}{{.OnCluster}} AS defender.{{.Table}}_local
ENGINE = Distributed({{.Cluster}}, defender, {{.Table}}_local);
{{end}}

-- After the tables: the active parts of every shard, for readers that
-- size their scans from part metadata (system.parts lists no parts for a
-- Distributed table): record's query helpers read it with
-- table = '<table>_local'.
{{define "parts"}}
CREATE TABLE IF NOT EXISTS defender.cluster_parts{{.OnCluster}} AS system.parts
ENGINE = Distributed({{.Cluster}}, system, parts);
{{end}}
