// Package stacktest holds no code: its test runs scripts/stack.sh, the
// README's one-command stack (Redis, ClickHouse, the gate service with
// embedded NATS, the recorder, the admin and the example login site), as a
// newcomer would, and checks the whole pipeline end to end and its clean
// stop.
package stacktest
