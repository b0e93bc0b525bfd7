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
			require.Len(t, stmts, 6, "database, 2 local and 2 distributed tables, cluster_parts")
			for _, s := range stmts {
				assert.NotContains(t, s, "{{")
				assert.NotContains(t, s, "--")
				for _, n := range tc.not {
					assert.NotContains(t, s, n)
				}
				if strings.HasPrefix(s, "CREATE TABLE") && !strings.Contains(s, "Distributed(") {
					for _, w := range tc.want {
						assert.Contains(t, s, w)
					}
				}
			}
			assert.Contains(t, stmts[2], "Distributed(")
			assert.Contains(t, stmts[2], "cityHash64(toString(id))")
		})
	}
	_, err := cluster.Statements(cluster.Options{Cluster: "bad name; DROP"})
	assert.Error(t, err)
}

// TestDDLUnchanged pins the DDL both schemas produce, to the byte: the
// single-node migrations (record.Migrations, from package schema) and the
// clustered variant derived from them, without and with Keeper. The hashes
// are those of the statements as they were when the clustered schema still
// had its own copy of the tables. A change to the schema on purpose changes
// them: review the statements the failure prints, then update the hash.
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
		{"single node", single, "aa495bd0e5cad8896c2f705966374c8badc9937416adfb4be5ab9f9838fc489d"},
		{"cluster", local, "2ca68be75ec45eb61cc8342b586a523e8bd1de9997592472e2da1afc0c4b5394"},
		{"replicated cluster", replicated, "a1ec199547dbc06bb6d62d2e5781e4bd186246de9e5868b6725a0fdb9c2d63a3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sql := strings.Join(tc.stmts, ";\n\n") + ";\n"
			sum := sha256.Sum256([]byte(sql))
			assert.Equal(t, tc.hash, hex.EncodeToString(sum[:]), "the DDL changed:\n%s", sql)
		})
	}
}
