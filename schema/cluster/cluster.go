// Package cluster holds the clustered variant of defender's ClickHouse
// schema (see deploy/clickhouse-cluster.md): the tables of package schema
// under the same names, as Distributed tables over per-shard local
// ReplacingMergeTree (or ReplicatedReplacingMergeTree) tables, so that the
// recorder and the admin work on a cluster unchanged.
//
// Apply Statements on every node (or once, with Options.OnCluster, where
// ZooKeeper or ClickHouse Keeper runs distributed DDL), then run the usual
// migrations (record.Migrate): their CREATE TABLE IF NOT EXISTS find the
// Distributed tables in place and only record the version.
package cluster

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
)

// FS holds the clustered DDL, NNN_name.sql templates for Statements.
//
//go:embed *.sql
var FS embed.FS

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

// Statements renders the clustered schema for o, one SQL statement per
// element, in order. Each is idempotent (IF NOT EXISTS).
func Statements(o Options) ([]string, error) {
	if o.Cluster == "" {
		o.Cluster = "defender"
	}
	if !clusterName.MatchString(o.Cluster) {
		return nil, fmt.Errorf("cluster name %q: want letters, digits and _", o.Cluster)
	}
	vars := map[string]string{"Cluster": o.Cluster, "ShardingKey": "cityHash64(toString(id))"}
	if o.OnCluster {
		vars["OnCluster"] = " ON CLUSTER " + o.Cluster
	}
	engine := func(table string) string {
		if o.Replicated {
			return fmt.Sprintf("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/defender/%s', '{replica}')", table)
		}
		return "ReplacingMergeTree"
	}
	names, err := FS.ReadDir(".")
	if err != nil {
		return nil, fmt.Errorf("clustered schema: %w", err)
	}
	var out []string
	for _, e := range names {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		src, err := FS.ReadFile(e.Name())
		if err != nil {
			return nil, fmt.Errorf("clustered schema %s: %w", e.Name(), err)
		}
		t, err := template.New(e.Name()).Funcs(template.FuncMap{"engine": engine}).Option("missingkey=zero").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("clustered schema %s: %w", e.Name(), err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, vars); err != nil {
			return nil, fmt.Errorf("clustered schema %s: %w", e.Name(), err)
		}
		out = append(out, split(b.String())...)
	}
	if len(out) == 0 {
		return nil, errors.New("clustered schema: no statements")
	}
	return out, nil
}

// Execer runs one statement: a clickhouse-go driver.Conn.
type Execer interface {
	Exec(ctx context.Context, query string, args ...any) error
}

// Apply runs Statements(o) on conn, in order.
func Apply(ctx context.Context, conn Execer, o Options) error {
	stmts, err := Statements(o)
	if err != nil {
		return err
	}
	for _, stmt := range stmts {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("clustered schema: %w", err)
		}
	}
	return nil
}

// split cuts SQL into statements ending with ';' at the end of a line,
// dropping "--" comment lines, as package schema's files are written.
func split(sql string) []string {
	var out []string
	var cur []string
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur = append(cur, line)
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(strings.Join(cur, "\n")), ";"))
			cur = nil
		}
	}
	return out
}
