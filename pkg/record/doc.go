// Package record is defender's history writer: a Recorder consumes the
// attempt, block and unblock events from the DEFENDER JetStream stream and
// writes them into ClickHouse in batches, acknowledging a message only
// once ClickHouse has confirmed its row. Messages it cannot store go to
// the dead-letter subject "<prefix>.dlq" and never stop the pipeline.
//
// The package also owns the rest of the ClickHouse side: Open parses
// DEFENDER_CLICKHOUSE_URL, Migrate applies the schema embedded from
// package schema, QueryAttempts, CountAttempts and QueryBlocks read the
// history with every event id once however often it was delivered, and
// Cleanup enforces DEFENDER_ACCESS_ATTEMPT_EXPIRATION.
//
// Everything here runs on ClickHouse 18.16, Debian 12's version, and on
// current releases, over the native protocol. Two quirks of 18.16 shape the
// code: an INSERT must name its columns, and an INSERT ... VALUES sent as a
// plain statement hangs (the server waits for data blocks), so every insert
// goes through a prepared batch.
package record
