// Package stacktest holds no code: its test runs scripts/stack.sh, the
// README's one-command stack (Redis, ClickHouse, the gate service with
// embedded NATS, the recorder, the admin, the example login site, and the
// notifier with the mail catcher mailpit), as a newcomer would, and checks
// the whole pipeline end to end, the notifier's mail and its unlock link
// included, and its clean stop.
package stacktest
