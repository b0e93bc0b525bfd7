// Package reliability holds defender's fault tests: they build cmd/gate
// and cmd/recorder, run them as processes against real Redis, NATS and
// ClickHouse servers (internal/testenv), break those servers on purpose
// while logins flow, and check what docs/RELIABILITY.md promises: every
// login answered by the fail mode, no 500s, no goroutine growth,
// protection back once Redis is, every attempt stored exactly once, and
// parallel guesses bounded across gate processes.
//
// The package has no code of its own: everything is in its tests. Run
// them with
//
//	go test ./internal/reliability/ -v
//
// DEFENDER_LONG_TESTS=1 stops ClickHouse for 30 s instead of 10 s.
package reliability
