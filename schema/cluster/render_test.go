package cluster_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/record"
	"github.com/defender-go/defender/schema/cluster"
)

func TestStatements(t *testing.T) {
	tests := []struct {
		name string
		opts cluster.Options
		want []string // in every CREATE TABLE of a local table
		not  []string
	}{
		{"local", cluster.Options{}, []string{"ENGINE = ReplacingMergeTree"}, []string{"ON CLUSTER", "Replicated"}},
		{"replicated", cluster.Options{Cluster: "prod", Replicated: true, OnCluster: true},
			[]string{"ON CLUSTER prod", "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/defender/"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stmts, err := cluster.Statements(tc.opts)
			require.NoError(t, err)
			require.Len(t, stmts, 24, "database, 2 local and 2 distributed tables, 6 ALTERs of a local table and its Distributed table, 3 local views and the Distributed tables over them, cluster_parts")
			views := 0
			for i, s := range stmts {
				if strings.HasPrefix(s, "ALTER TABLE") {
					// Each ALTER of a migration: the local table first (its
					// rows), then the Distributed table over it.
					local, dist, ok := strings.Cut(s, "_local")
					if ok {
						assert.Equal(t, local+dist, stmts[i+1])
					} else {
						assert.Contains(t, stmts[i-1], "_local")
					}
					if tc.opts.OnCluster {
						assert.Contains(t, s, " ON CLUSTER "+tc.opts.Cluster+" ")
					}
				}
				assert.NotContains(t, s, "{{")
				assert.NotContains(t, s, "--")
				for _, n := range tc.not {
					assert.NotContains(t, s, n)
				}
				if strings.HasPrefix(s, "CREATE MATERIALIZED VIEW") {
					// Each shard counts its own rows; the view is read
					// through the Distributed table that follows it.
					views++
					assert.Contains(t, s, "_local"+cond(tc.opts.OnCluster, " ON CLUSTER "+tc.opts.Cluster, "")+"\nENGINE = "+
						cond(tc.opts.Replicated, "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/defender/", "SummingMergeTree\n"))
					assert.Contains(t, s, "\nFROM defender.attempts_local\n")
					name := strings.Fields(s)[6]
					assert.Equal(t, "CREATE TABLE IF NOT EXISTS "+strings.TrimSuffix(name, "_local")+
						cond(tc.opts.OnCluster, " ON CLUSTER "+tc.opts.Cluster, "")+" AS "+name+"\nENGINE = Distributed("+
						cond(tc.opts.Cluster == "", "defender", tc.opts.Cluster)+", defender, "+strings.TrimPrefix(name, "defender.")+")", stmts[i+1])
				}
				if strings.HasPrefix(s, "CREATE TABLE") && !strings.Contains(s, "Distributed(") {
					for _, w := range tc.want {
						assert.Contains(t, s, w)
					}
				}
			}
			assert.Equal(t, 3, views)
			assert.Contains(t, stmts[2], "Distributed(")
			assert.Contains(t, stmts[2], "cityHash64(toString(id))")
		})
	}
	_, err := cluster.Statements(cluster.Options{Cluster: "bad name; DROP"})
	assert.Error(t, err)
}

func cond(c bool, yes, no string) string {
	if c {
		return yes
	}
	return no
}

// TestDDLUnchanged pins the DDL both schemas produce, to the byte: the
// single-node migrations (record.Migrations, from package schema) and the
// clustered variant derived from them, without and with Keeper. The hashes
// were those of the statements as they were when the clustered schema still
// had its own copy of the tables, then of those with 002_kinds_observe.sql's
// ALTERs added after them, then with 003_aggregates.sql's views. A change to the schema on purpose changes them:
// review the statements the failure prints, then update the hash.
func TestDDLUnchanged(t *testing.T) {
	migrations, err := record.Migrations()
	require.NoError(t, err)
	var single []string
	for _, m := range migrations {
		single = append(single, m.Statements...)
	}
	local, err := cluster.Statements(cluster.Options{})
	require.NoError(t, err)
	replicated, err := cluster.Statements(cluster.Options{Cluster: "prod", Replicated: true, OnCluster: true})
	require.NoError(t, err)
	tests := []struct {
		name  string
		stmts []string
		hash  string
	}{
		{"single node", single, "96e7dbab0bc3eeede1f2f81d357fc709e5b7eef9045716ee78ab96504c550eca"},
		{"cluster", local, "c423e5236b867c819fca56561854a4c5b0958c88dd8f349951c62c9477b3b35d"},
		{"replicated cluster", replicated, "c06d5e021a932fb5dce4f8ad3c29cd35db199fb32e6ae7673ce1136cb9a9075f"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sql := strings.Join(tc.stmts, ";\n\n") + ";\n"
			sum := sha256.Sum256([]byte(sql))
			assert.Equal(t, tc.hash, hex.EncodeToString(sum[:]), "the DDL changed:\n%s", sql)
		})
	}
}
