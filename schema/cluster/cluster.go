// Package cluster holds the clustered variant of defender's ClickHouse
// schema (see deploy/clickhouse-cluster.md): the tables of package schema
// under the same names, as Distributed tables over per-shard local
// ReplacingMergeTree (or ReplicatedReplacingMergeTree) tables, so that the
// recorder and the admin work on a cluster unchanged.
//
// The tables are not written twice: Statements derives them from package
// schema's migrations. Each "CREATE TABLE IF NOT EXISTS defender.<table>"
// there, whose engine must be ReplacingMergeTree, becomes two statements:
//
//   - the same table as defender.<table>_local, with the engine
//     ReplicatedReplacingMergeTree when Options.Replicated, and
//     " ON CLUSTER <name>" after its name when Options.OnCluster;
//   - defender.<table> AS defender.<table>_local, a Distributed table
//     over it (the "distributed" block of cluster.sql).
//
// Each "CREATE MATERIALIZED VIEW IF NOT EXISTS defender.<view>" over
// "FROM defender.<table>", whose engine must be a *MergeTree of its own
// (the views of schema/003_aggregates.sql), becomes two statements too:
//
//   - the same view as defender.<view>_local over defender.<table>_local,
//     so that each shard counts the rows it stores, with the engine
//     Replicated<engine> when Options.Replicated (a replica's view sees
//     only the inserts made on that replica; the counts replicate);
//   - defender.<view>, a Distributed table over <view>_local for reading
//     (the "view" block of cluster.sql): sums over it add the shards' sums.
//
// Each "ALTER TABLE defender.<table> ..." becomes the same ALTER of
// defender.<table>_local, then of the Distributed table defender.<table>
// (which has columns of its own), with " ON CLUSTER <name>" after each
// name when Options.OnCluster.
//
// cluster.sql holds what only the cluster has: the database first and the
// defender.cluster_parts view last. A migration of any other form has no
// clustered form yet, and Statements says so.
//
// Apply Statements on every node (or once, with Options.OnCluster, where
// ZooKeeper or ClickHouse Keeper runs distributed DDL), then run the usual
// migrations (record.Migrate): their CREATE TABLE IF NOT EXISTS find the
// Distributed tables in place, their ALTERs find them altered, and they
// only record the version. After an upgrade that brings new migrations,
// apply Statements again (they are idempotent) before the new recorder
// starts: record.Migrate alone would alter only the Distributed tables of
// the node it runs on, not the local tables that hold the rows.
package cluster

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"regexp"
	"text/template"

	"github.com/defender-go/defender/schema"
)

//go:embed cluster.sql
var clusterSQL string

var blocks = template.Must(template.New("cluster.sql").Option("missingkey=error").Parse(clusterSQL))

// Options selects the variant of the clustered schema.
type Options struct {
	// Cluster is the cluster's name in the servers' remote_servers
	// ("defender" when empty).
	Cluster string
	// Replicated selects ReplicatedReplacingMergeTree, replicated through
	// ZooKeeper or ClickHouse Keeper at
	// /clickhouse/tables/{shard}/defender/<table> with replica {replica}
	// (macros every server defines). Without it the local tables are
	// ReplacingMergeTree: shards without replicas, which needs no Keeper.
	Replicated bool
	// OnCluster makes every statement ON CLUSTER, run by one node on all
	// (distributed DDL needs Keeper too). Without it, run the statements
	// on every node.
	OnCluster bool
}

var clusterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// createTable is the form of a migration statement Statements derives a
// local table from: the table's name, then everything up to the engine,
// then everything after it.
var createTable = regexp.MustCompile(`(?s)^(CREATE TABLE IF NOT EXISTS defender\.)([A-Za-z_][A-Za-z0-9_]*)(\n.*\nENGINE = )ReplacingMergeTree(\n.*)$`)

// createView is the form of a migration's materialized view: its name,
// the text up to the engine, the engine, the text up to its source table,
// the source table, and the rest.
var createView = regexp.MustCompile(`(?s)^(CREATE MATERIALIZED VIEW IF NOT EXISTS defender\.)([A-Za-z_][A-Za-z0-9_]*)(\nENGINE = )([A-Za-z]*MergeTree)(\n.*\nFROM defender\.)([A-Za-z_][A-Za-z0-9_]*)(\n.*)$`)

// alterTable is the form of a migration's ALTER statement: the table's
// name, then the rest.
var alterTable = regexp.MustCompile(`(?s)^ALTER TABLE defender\.([A-Za-z_][A-Za-z0-9_]*)( .*)$`)

// Statements renders the clustered schema for o, one SQL statement per
// element, in order. Each is idempotent (IF NOT EXISTS; an ADD COLUMN
// through schema.Exec, as Apply runs it).
func Statements(o Options) ([]string, error) {
	if o.Cluster == "" {
		o.Cluster = "defender"
	}
	if !clusterName.MatchString(o.Cluster) {
		return nil, fmt.Errorf("cluster name %q: want letters, digits and _", o.Cluster)
	}
	onCluster := ""
	if o.OnCluster {
		onCluster = " ON CLUSTER " + o.Cluster
	}
	render := func(block, table string) ([]string, error) {
		var b bytes.Buffer
		vars := map[string]string{"Cluster": o.Cluster, "OnCluster": onCluster, "Table": table}
		if err := blocks.ExecuteTemplate(&b, block, vars); err != nil {
			return nil, fmt.Errorf("clustered schema: %w", err)
		}
		return schema.Split(b.String())
	}
	out, err := render("database", "")
	if err != nil {
		return nil, err
	}
	migrations, err := schema.Migrations()
	if err != nil {
		return nil, fmt.Errorf("clustered schema: %w", err)
	}
	for _, m := range migrations {
		for i, stmt := range m.Statements {
			if alter := alterTable.FindStringSubmatch(stmt); alter != nil {
				table, rest := alter[1], alter[2]
				out = append(out,
					"ALTER TABLE defender."+table+"_local"+onCluster+rest,
					"ALTER TABLE defender."+table+onCluster+rest)
				continue
			}
			if view := createView.FindStringSubmatch(stmt); view != nil {
				name, engine := view[2], view[4]
				if o.Replicated {
					engine = fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/defender/%s_local', '{replica}')", engine, name)
				}
				out = append(out, view[1]+name+"_local"+onCluster+view[3]+engine+view[5]+view[6]+"_local"+view[7])
				dist, err := render("view", name)
				if err != nil {
					return nil, err
				}
				out = append(out, dist...)
				continue
			}
			parts := createTable.FindStringSubmatch(stmt)
			if parts == nil {
				return nil, fmt.Errorf("clustered schema: %s statement %d: only CREATE TABLE IF NOT EXISTS defender.<table> ... ENGINE = ReplacingMergeTree, CREATE MATERIALIZED VIEW IF NOT EXISTS defender.<view> ... FROM defender.<table> and ALTER TABLE defender.<table> have a clustered form", m.Name, i+1)
			}
			table := parts[2]
			engine := "ReplacingMergeTree"
			if o.Replicated {
				engine = fmt.Sprintf("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/defender/%s_local', '{replica}')", table)
			}
			out = append(out, parts[1]+table+"_local"+onCluster+parts[3]+engine+parts[4])
			dist, err := render("distributed", table)
			if err != nil {
				return nil, err
			}
			out = append(out, dist...)
		}
	}
	last, err := render("parts", "")
	if err != nil {
		return nil, err
	}
	return append(out, last...), nil
}

// Execer runs one statement: a clickhouse-go driver.Conn.
type Execer = schema.Execer

// Apply runs Statements(o) on conn, in order (through schema.Exec).
func Apply(ctx context.Context, conn Execer, o Options) error {
	stmts, err := Statements(o)
	if err != nil {
		return err
	}
	for _, stmt := range stmts {
		if err := schema.Exec(ctx, conn, stmt); err != nil {
			return fmt.Errorf("clustered schema: %w", err)
		}
	}
	return nil
}
