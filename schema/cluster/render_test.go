package cluster_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
