package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/defender-go/defender/internal/truncate"
	"github.com/defender-go/defender/pkg/events"
)

// callError is a failed call: why, whether trying again may help, and how
// long the receiver asked us to wait (its Retry-After; 0 when it did not
// say).
type callError struct {
	err        error
	retry      bool
	retryAfter time.Duration
}

func (e *callError) Error() string { return e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

// send calls e with batch until e takes it, refuses it or the attempts
// run out, then releases the batch's Deliver calls. If ctx ends while a
// retry waits it returns without releasing them: their events stay
// unacknowledged and come back.
func (s *Sender) send(ctx context.Context, e *endpoint, batch []*item) {
	blocks := make([]events.Block, len(batch))
	for i, it := range batch {
		blocks[i] = it.block
	}
	for attempt := 1; ; attempt++ {
		e.lastCall = time.Now()
		cerr := s.call(ctx, e, blocks)
		if cerr == nil {
			s.m.sent.WithLabelValues(e.host).Inc()
			s.m.blocks.WithLabelValues(e.host).Add(float64(len(blocks)))
			release(batch)
			return
		}
		s.m.failed.WithLabelValues(e.host).Inc()
		if !cerr.retry || attempt >= s.o.Attempts {
			s.giveUp(ctx, e, blocks, attempt, cerr)
			release(batch)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.m.retried.WithLabelValues(e.host).Inc()
		wait := s.backoff(attempt, cerr.retryAfter)
		s.o.Log.Info("webhook call failed, will retry", "endpoint", e.host, "blocks", len(blocks),
			"attempt", attempt, "retry_in", wait, "err", cerr)
		if !sleep(ctx, wait) {
			return
		}
	}
}

// call makes one signed POST of blocks to e. It returns nil on a 2xx answer.
func (s *Sender) call(ctx context.Context, e *endpoint, blocks []events.Block) *callError {
	now := s.o.Now()
	data, err := body(e.Format, blocks, now)
	if err != nil {
		return &callError{err: fmt.Errorf("encode %d blocks for %s: %w", len(blocks), e.host, err)}
	}
	// The call in flight when Run's context ends runs to its end, within
	// Timeout: cut short, the receiver might act on a batch that we then
	// report as not delivered, and send again after the restart.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, e.URL, bytes.NewReader(data))
	if err != nil {
		return &callError{err: fmt.Errorf("request to %s: %w", e.host, withoutURL(err))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "defender-notifier")
	req.Header.Set(headerBatch, strconv.Itoa(len(blocks)))
	sign(req.Header, s.o.Secrets, now, data)
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return &callError{err: fmt.Errorf("post to %s: %w", e.host, withoutURL(err)), retry: true}
	}
	defer resp.Body.Close()
	// Read a little of the answer, for the error and so that the
	// connection can be reused.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return answerError(e.host, resp, answer)
}

// answerError is the error of an answer that is not a 2xx, nil for a 2xx.
// A 5xx, 408 or 429 may pass and is retried; any other answer is the
// receiver refusing the batch, a 3xx included (no redirect is followed).
func answerError(host string, resp *http.Response, answer []byte) *callError {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	retry := code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
	cerr := &callError{
		err:   fmt.Errorf("%s answered %d: %q", host, code, truncate.UTF8(string(answer), 200)),
		retry: retry,
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		cerr.retryAfter = retryAfter(resp.Header.Get("Retry-After"))
	}
	return cerr
}

// retryAfter is a Retry-After header's delay in seconds; 0 when it is
// absent, not a number of seconds (an HTTP date is not honoured) or not
// positive. It is at most a day, beyond which it is capped anyway.
func retryAfter(h string) time.Duration {
	n, err := strconv.Atoi(h)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(min(n, 86400)) * time.Second
}

// withoutURL is err without the URL that net/http quotes in its errors:
// the path may be a secret and errors end up in logs.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// backoff is the wait after a failed attempt: Backoff doubled for each
// attempt after the first, plus up to a fifth of jitter so that senders
// that failed together do not retry together, or the receiver's
// retryAfter when it gave one; at most MaxBackoff.
func (s *Sender) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, s.o.MaxBackoff)
	}
	d := s.o.Backoff
	for i := 1; i < attempt && d < s.o.MaxBackoff; i++ {
		d *= 2
	}
	d += rand.N(d/5 + 1)
	return min(d, s.o.MaxBackoff)
}

// giveUp hands a batch that e did not take to the dead letter, with a
// metric and a warning.
func (s *Sender) giveUp(ctx context.Context, e *endpoint, blocks []events.Block, attempts int, cerr *callError) {
	s.m.deadLettered.WithLabelValues(e.host).Inc()
	s.o.Log.Warn("webhook gave up on a batch", "endpoint", e.host, "blocks", len(blocks),
		"attempts", attempts, "err", cerr)
	if s.o.DeadLetter == nil {
		return
	}
	// Written even while Run stops: the batch counts as delivered.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
	defer cancel()
	dl := DeadLetter{Endpoint: e.host, Blocks: blocks, Attempts: attempts, Err: cerr.Error(), Time: s.o.Now()}
	if err := s.o.DeadLetter(dctx, dl); err != nil {
		// The batch still counts as given up on (its events are
		// acknowledged): the metric is what an alert can watch.
		s.m.deadLetterWriteFailed.WithLabelValues(e.host).Inc()
		s.o.Log.Error("webhook dead letter not written: the batch is lost", "endpoint", e.host, "blocks", len(blocks), "err", err)
	}
}

// release tells the batch's Deliver calls that it is done with.
func release(batch []*item) {
	for _, it := range batch {
		close(it.done)
	}
}
