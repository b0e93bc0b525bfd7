// Package webhook alerts administrators of block events by webhook: it
// POSTs batches of events.Block to HTTP endpoints, as generic JSON or as
// Slack messages, signed so that receivers can tell them from forgeries.
//
// # Batching
//
// Each endpoint has a queue and one call at a time. The first block to
// wait starts an Interval; the blocks that arrive meanwhile join it, and
// at the Interval's end they go together in one call of at most MaxBatch
// blocks (the rest wait for the next call). Two calls to an endpoint are
// at least an Interval apart, so a burst of blocks makes a few calls, not
// one per block. A batch being retried holds its endpoint: later blocks
// wait for the next call after it. A failed call (a network error, a
// timeout, a 5xx, 408 or 429 answer) is tried again, Attempts times in
// all, after an exponential backoff with jitter (a 429's or 503's
// Retry-After replaces the backoff); another answer, a 4xx or a 3xx,
// is the receiver refusing the batch and is not retried. A batch given
// up on goes to the DeadLetter callback, with a metric and a warning.
//
// # Acknowledgement
//
// Deliver returns once every endpoint has either taken the block (a 2xx
// answer) or given up on it; it then returns nil, and the caller
// acknowledges the event. It returns an error only when its context ends
// or the sender stops first; the caller then leaves the event
// unacknowledged and the stream delivers it again. Delivery is therefore
// at least once: a receiver may see a block twice (after a retry, or a
// redelivery) and should drop the ids it has seen. The caller's ack
// deadline must cover Deliver's longest wait: an Interval, the batches
// ahead, then Attempts calls of up to Timeout and the backoff between.
//
// # Signatures
//
// Every call carries Defender-Timestamp (unix seconds),
// Defender-Signature and Defender-Batch (the number of blocks). The
// signature is "v1=" and the hex HMAC-SHA256, keyed with a secret, of
// "<timestamp>.<body>"; Verify checks it on the receiver's side. The
// timestamp is signed with the body so that a captured call cannot be
// replayed for long: receivers refuse timestamps outside a tolerance.
//
// To rotate the secret, list the new one first and the old one after in
// Options.Secrets: each call then carries one v1 entry per secret,
// comma separated, and receivers that know either one verify it. Move
// the receivers to the new secret, then drop the old one from the list.
//
// # Secrets in URLs
//
// A Slack webhook's URL path is its credential, so endpoints are named by
// their host alone in logs, errors, metrics (label endpoint) and dead
// letters. Redirects are not followed.
package webhook
