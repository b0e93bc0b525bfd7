// Package record is defender's history writer: a Recorder consumes the
// attempt, block and unblock events from the DEFENDER JetStream stream and
// writes them into ClickHouse in batches, acknowledging a message only
// once ClickHouse has confirmed its row. Messages it cannot store go to
// the dead-letter subject "<prefix>.dlq" and never stop the pipeline.
//
// The package also owns the rest of the ClickHouse side: Open parses
// DEFENDER_CLICKHOUSE_URL, Migrate applies the schema embedded from
// package schema, QueryAttempts, CountAttempts and QueryBlocks read the
// history with every event id once however often it was delivered,
// AttemptCounts, BlockCounts and Top give the admin's dashboard its
// figures, and Cleanup enforces DEFENDER_ACCESS_ATTEMPT_EXPIRATION. This
// is defender's one read layer: one filter per table, one cursor format,
// one WHERE builder; cmd/admin only shapes its rows for the API.
//
// # Reading each event once
//
// A redelivered event is inserted again; ReplacingMergeTree collapses the
// copies only when parts merge, at ClickHouse's leisure. FINAL would hide
// them at query time but is slow on big tables, so the helpers here dedupe
// cheaply instead: listings use "ORDER BY ts DESC, ts_ms DESC, id DESC
// LIMIT 1 BY id LIMIT n" (the copies share ts and id, so they are adjacent
// and lie in the same time window, QueryNewest) and counts use
// uniqExact(id). Code that queries the tables directly must do the same.
//
// The figures of AttemptCounts and Top come from the materialized views
// of schema/003_aggregates.sql, which count stored rows: a copy not merged
// away when it was stored counts twice there (docs/DESIGN.md says how
// rare that is). QueryAttempts uses the per-subject view only to bound the
// time span it reads, and checks what it finds, so listings stay exact.
//
// # The clustered schema
//
// On the clustered schema (package schema/cluster) the tables are
// Distributed over a <table>_local on every shard, and every copy of an
// event lands on one shard. Listings then run whole on each shard and are
// merged (QueryNewest; 18.16 would otherwise cut each shard's page before
// collapsing copies), the query helpers size their windows from
// defender.cluster_parts, and Cleanup works on the local table of the
// shard it is connected to.
//
// # ClickHouse 18.16
//
// Everything here runs on ClickHouse 18.16, Debian 12's version, and on
// current releases, over the native protocol. Checked on 18.16: LIMIT n BY,
// tuple comparisons such as (ts, ts_ms, id) < (...), ALTER TABLE ... DROP
// PARTITION ID and ALTER TABLE ... DELETE (an asynchronous mutation; there
// is no mutations_sync, so Cleanup polls system.mutations), and
// system.parts' min_time/max_time for a table partitioned by toDate(ts).
// Two quirks shape the code: an INSERT must name its columns, and an
// INSERT ... VALUES sent as a plain statement hangs (the server waits for
// data blocks the driver never sends), so every insert, even a one-row
// one, goes through a prepared batch.
package record
