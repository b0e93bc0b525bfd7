package sharedip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Retry delays of a source whose last load failed or was refused: the
// first retry after retryMin, doubling up to retryMax (and to Refresh
// when that is shorter), so that a list missing at start is not missing
// for a day, and a publisher in trouble is not hammered.
const (
	retryMin = time.Minute
	retryMax = time.Hour
)

// Run loads the lists when they are due until ctx ends, then returns
// nil. URLs are fetched when Run starts (but those cached less than
// Refresh ago), then every Refresh; files are read again every Refresh
// if they changed. A load that fails keeps the list in use, is logged
// and counted, and is retried after a minute, then after twice as long
// each time, up to an hour.
func (s *Sets) Run(ctx context.Context) error {
	for {
		next, ok := s.refreshDue(ctx, time.Now())
		if !ok {
			<-ctx.Done()
			return nil
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Refresh fetches every URL and reads again every file that changed,
// now, whether due or not (an admin's "reload"). It returns the failures
// and refusals, joined; the lists they concern stay as they were.
func (s *Sets) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, src := range s.sources {
		if src.builtin == nil {
			errs = append(errs, s.refresh(ctx, src))
		}
	}
	return errors.Join(errs...)
}

// refreshDue loads the sources due at now, and says when the next one is
// due (false: never).
func (s *Sets) refreshDue(ctx context.Context, now time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	found := false
	for _, src := range s.sources {
		due, ok := src.due(s.cfg.Refresh)
		if ok && !due.After(now) && ctx.Err() == nil {
			_ = s.refresh(ctx, src) // logged and counted
			due, ok = src.due(s.cfg.Refresh)
		}
		if ok && (!found || due.Before(next)) {
			next, found = due, true
		}
	}
	return next, found
}

// due says when src is to be loaded again; false: never.
func (src *source) due(every time.Duration) (time.Time, bool) {
	switch {
	case src.builtin != nil:
		return time.Time{}, false
	case src.failures > 0:
		return src.checked.Add(backoff(src.failures, every)), true
	case src.checked.IsZero():
		return src.checked, true // a URL never fetched: at once
	case every == 0:
		return time.Time{}, false
	}
	return src.checked.Add(every), true
}

// backoff is the wait before the retry that follows failures failures in
// a row.
func backoff(failures int, every time.Duration) time.Duration {
	d := retryMax
	if failures <= 6 { // from the 7th on, 1<<6 minutes and more: past retryMax, and no shift to overflow
		d = min(retryMin<<(failures-1), retryMax)
	}
	if every > 0 {
		d = min(d, every)
	}
	return d
}

// Results of a load, as counted.
const (
	resultOK      = "ok"
	resultFailed  = "failed"
	resultRefused = "refused"
)

// refresh loads src once from its URL, or else its file if that
// changed, and records the outcome. Callers hold s.mu.
func (s *Sets) refresh(ctx context.Context, src *source) error {
	now := time.Now()
	var (
		l             loaded
		from, setting string
		unchanged     bool
		err           error
	)
	if src.url != "" {
		from, setting = src.url, src.urlVar
		l, unchanged, err = s.fetch(ctx, src)
	} else {
		from, setting = src.file, src.fileVar
		l, unchanged, err = s.reread(src)
	}
	if err != nil && ctx.Err() != nil {
		return err // shutting down: not a failure of the source
	}
	src.checked = now
	if err != nil {
		src.failures++
		result := resultFailed
		if errors.Is(err, ErrRefused) {
			result = resultRefused
		}
		s.metrics.refreshed(src.name, result)
		s.update(src, func(ls *listState) {
			ls.info.Checked = now
			ls.info.LastError = err.Error()
		})
		s.log.Warn("shared list not loaded; the last good one stays in use", "list", src.name, "setting", setting, "source", from,
			"result", result, "prefixes_in_use", src.prefixes, "failures_in_a_row", src.failures, "err", err)
		return fmt.Errorf("%s (%s): %s: %w", src.name, setting, from, err)
	}
	src.failures = 0
	s.metrics.refreshed(src.name, resultOK)
	if unchanged {
		s.metrics.confirmed(src.name, now)
		s.update(src, func(ls *listState) {
			ls.info.Checked = now
			ls.info.LastError = ""
		})
		s.log.Debug("shared list unchanged", "list", src.name, "source", from)
		return nil
	}
	s.accept(src, l, from, now)
	return nil
}

// reread reads src's file again if it changed since it was read.
func (s *Sets) reread(src *source) (loaded, bool, error) {
	fi, err := os.Stat(src.file)
	if err != nil {
		return loaded{}, false, err
	}
	if (fileStamp{fi.ModTime(), fi.Size()}) == src.stamp {
		return loaded{}, true, nil
	}
	l, stamp, err := s.readFile(src, src.file)
	if err != nil {
		return loaded{}, false, err
	}
	src.stamp = stamp
	return l, false, nil
}

// fetch gets src's URL, conditionally when the last answer accepted had
// validators, and checks the list. It keeps the answer's validators, and
// writes the cache, only once the list is accepted: a refused answer is
// fetched whole again next time.
func (s *Sets) fetch(ctx context.Context, src *source) (loaded, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.url, nil)
	if err != nil {
		return loaded{}, false, err
	}
	if src.etag != "" {
		req.Header.Set("If-None-Match", src.etag)
	}
	if src.lastModified != "" {
		req.Header.Set("If-Modified-Since", src.lastModified)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return loaded{}, false, err
	}
	defer resp.Body.Close()
	conditional := src.etag != "" || src.lastModified != ""
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		return loaded{}, true, nil
	case resp.StatusCode != http.StatusOK:
		return loaded{}, false, fmt.Errorf("HTTP status %s", resp.Status)
	}
	text, err := readCapped(resp.Body, resp.ContentLength, s.cfg.MaxBytes)
	if err != nil {
		return loaded{}, false, err
	}
	l, err := s.checkText(src, src.url, text, true)
	if err != nil {
		return loaded{}, false, err
	}
	src.etag, src.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if src.cache != "" {
		if err := writeCache(src.cache, text); err != nil {
			s.log.Warn("shared list: cache not written", "list", src.name, "cache", src.cache, "err", err)
		}
	}
	return l, false, nil
}

// readCapped reads r whole into a string, refusing more than max bytes.
// size, when known, sizes the string at once.
func readCapped(r io.Reader, size, max int64) (string, error) {
	if size > max {
		return "", fmt.Errorf("%w: %d bytes, more than the cap of %d", ErrRefused, size, max)
	}
	var b strings.Builder
	if size > 0 {
		b.Grow(int(size))
	}
	if _, err := io.Copy(&b, io.LimitReader(r, max+1)); err != nil {
		return "", err
	}
	if int64(b.Len()) > max {
		return "", fmt.Errorf("%w: more than the cap of %d bytes", ErrRefused, max)
	}
	return b.String(), nil
}

// writeCache replaces the cache file whole, so that a crash leaves the
// old one or the new one, never half of one.
func writeCache(path, text string) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}
