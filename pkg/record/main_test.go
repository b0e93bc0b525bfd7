package record_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/record"
)

// One clickhouse-server serves the package's tests, which run one after
// the other; each starts from a fresh defender database. Tests that stop
// the server start their own.
var (
	chOnce   sync.Once
	chServer *testenv.ClickHouseServer
	chErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if chServer != nil {
		chServer.Kill()
		os.RemoveAll(chServer.Dir())
	}
	os.Exit(code)
}

// sharedClickHouse returns the package's server with an empty, migrated
// defender database, and a connection to it.
func sharedClickHouse(t testing.TB) (*testenv.ClickHouseServer, driver.Conn) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not starting clickhouse-server")
	}
	chOnce.Do(func() {
		dir, err := os.MkdirTemp("", "record-clickhouse-")
		if err != nil {
			chErr = err
			return
		}
		chServer, chErr = testenv.StartClickHouse(dir)
	})
	require.NoError(t, chErr, "clickhouse-server")
	conn := open(t, chServer)
	ctx := context.Background()
	require.NoError(t, conn.Exec(ctx, "DROP DATABASE IF EXISTS defender"))
	_, err := record.Migrate(ctx, conn)
	require.NoError(t, err)
	return chServer, conn
}

// ownClickHouse starts a server for one test (which may stop it) with the
// schema applied.
func ownClickHouse(t testing.TB) (*testenv.ClickHouseServer, driver.Conn) {
	t.Helper()
	s := testenv.ClickHouse(t)
	conn := open(t, s)
	_, err := record.Migrate(context.Background(), conn)
	require.NoError(t, err)
	return s, conn
}

// open connects as the recorder does, through record.Open.
func open(t testing.TB, s *testenv.ClickHouseServer) driver.Conn {
	t.Helper()
	conn, err := record.Open(s.DSN())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}
