package mail

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/defender-go/defender/internal/redact"
)

// placeholder in LookupOptions.URL stands for the username.
const placeholder = "{username}"

// maxAnswer is the largest lookup answer read: an address is short, and
// a site that answers megabytes is broken or hostile.
const maxAnswer = 64 << 10

// LookupOptions configure a Lookup. URL is required.
type LookupOptions struct {
	// URL is asked for each username, e.g.
	// "https://site.internal/defender/email?username={username}".
	// {username} is replaced by the escaped username (query-escaped in
	// the query, path-escaped in the path); a URL without it gets
	// "username=" appended to its query. A URL that answers 404 for
	// everyone (a wrong path) reads as "no such user": check it once by
	// hand.
	URL string
	// Timeout bounds one request (default 3s).
	Timeout time.Duration
	// CacheTTL is how long an answer is kept, found or not found
	// (default 10m). Errors are never kept.
	CacheTTL time.Duration
	// CacheSize is how many usernames the cache holds (default 10000);
	// the least recently used one goes first.
	CacheSize int
	// Header is an optional "Name: value" sent with each request, such
	// as an API key.
	Header string
	// Client makes the requests. The default follows no redirect, since
	// it would carry Header to wherever the redirect points, and a
	// redirect is then an error.
	Client *http.Client
}

// Lookup asks the site for the address of a username's owner, and
// caches the answers. It is safe for concurrent use.
type Lookup struct {
	url         string // with placeholder
	headerName  string
	headerValue string
	timeout     time.Duration
	client      *http.Client
	cache       *cache
	now         func() time.Time // the cache's clock; tests set it
	inPath      bool             // the username goes in the URL's path
}

// NewLookup checks o.
func NewLookup(o LookupOptions) (*Lookup, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	target, err := lookupURL(o.URL)
	if err != nil {
		return nil, err
	}
	l := &Lookup{url: target, timeout: o.Timeout, client: o.Client, cache: newCache(o.CacheTTL, o.CacheSize), now: time.Now}
	path, _, _ := strings.Cut(target, "?")
	l.inPath = strings.Contains(path, placeholder)
	if o.Header != "" {
		if l.headerName, l.headerValue, err = parseHeader(o.Header); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (o *LookupOptions) setDefaults() error {
	switch {
	case o.Timeout < 0:
		return fmt.Errorf("mail: LookupOptions.Timeout %s is negative", o.Timeout)
	case o.CacheTTL < 0:
		return fmt.Errorf("mail: LookupOptions.CacheTTL %s is negative", o.CacheTTL)
	case o.CacheSize < 0:
		return fmt.Errorf("mail: LookupOptions.CacheSize %d is negative", o.CacheSize)
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = 10 * time.Minute
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return nil
}

// lookupURL checks raw and gives it a placeholder if it has none. Errors
// do not quote raw: it may hold credentials.
func lookupURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("mail: LookupOptions.URL is empty")
	}
	u, err := url.Parse(strings.ReplaceAll(raw, placeholder, "x"))
	switch {
	case err != nil:
		return "", fmt.Errorf("mail: LookupOptions.URL: %w", redact.URLError(raw, err))
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("mail: LookupOptions.URL: scheme %q, want http or https", u.Scheme)
	case u.Host == "":
		return "", errors.New("mail: LookupOptions.URL has no host")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", errors.New("mail: LookupOptions.URL has a fragment")
	}
	if strings.Contains(raw, placeholder) {
		return raw, nil
	}
	if strings.Contains(raw, "?") {
		return raw + "&username=" + placeholder, nil
	}
	return raw + "?username=" + placeholder, nil
}

// parseHeader splits "Name: value". Errors do not quote the value: it
// is likely a secret.
func parseHeader(h string) (name, value string, err error) {
	name, value, ok := strings.Cut(h, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
		return "", "", errors.New(`mail: LookupOptions.Header: want "Name: value" on one line`)
	}
	return name, value, nil
}

// target is the URL asked for username.
func (l *Lookup) target(username string) string {
	path, query, hasQuery := strings.Cut(l.url, "?")
	path = strings.ReplaceAll(path, placeholder, url.PathEscape(username))
	if !hasQuery {
		return path
	}
	return path + "?" + strings.ReplaceAll(query, placeholder, url.QueryEscape(username))
}

// Email returns the address of username's owner. found is false when
// the site answers 404, or 200 without an email. Any other answer, a
// timeout, bad JSON or an invalid address is an error, and is not
// cached: the next call asks again. An invalid address is an error that
// Permanent reports.
func (l *Lookup) Email(ctx context.Context, username string) (addr string, found bool, err error) {
	if strings.Trim(username, ".") == "" && l.inPath {
		// "." or ".." in the URL's path would ask another path of the
		// site, with the lookup's header: no account is named so.
		return "", false, nil
	}
	if e, ok := l.cache.get(username, l.now()); ok {
		return e.addr, e.found, nil
	}
	addr, found, err = l.ask(ctx, username)
	if err != nil {
		return "", false, fmt.Errorf("mail: look up the address of username %.100q: %w", username, err)
	}
	l.cache.put(username, addr, found, l.now())
	return addr, found, nil
}

// ask makes one request.
func (l *Lookup) ask(ctx context.Context, username string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.target(username), nil)
	if err != nil {
		return "", false, err
	}
	req.Header.Set("Accept", "application/json")
	if l.headerName != "" {
		req.Header.Set(l.headerName, l.headerValue)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", false, nil
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return "", false, fmt.Errorf("the site answered %s", resp.Status)
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		// The site refuses this username: asking again will not help, and
		// an attacker may choose usernames that it refuses.
		return "", false, fmt.Errorf("%w answer: the site answered %s", errInvalid, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return "", false, fmt.Errorf("the site answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return "", false, fmt.Errorf("read the answer: %w", err)
	}
	if len(body) > maxAnswer {
		return "", false, fmt.Errorf("the answer is larger than %d KiB", maxAnswer>>10)
	}
	return parseAnswer(body)
}

// parseAnswer reads {"email": "..."}: no email or an empty one is not
// found, an address must be a single bare one.
func parseAnswer(body []byte) (string, bool, error) {
	var a struct {
		Email string `json:"email"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return "", false, fmt.Errorf(`the answer is not {"email": "..."}: %w`, err)
	}
	if a.Email == "" {
		return "", false, nil
	}
	if _, err := parseAddr(a.Email); err != nil {
		return "", false, err
	}
	return a.Email, true, nil
}

// cache keeps answers for ttl, at most size of them, dropping the least
// recently used first.
type cache struct {
	mu    sync.Mutex
	ttl   time.Duration
	size  int
	order *list.List // of *entry, the most recently used in front
	items map[string]*list.Element
}

type entry struct {
	username string
	addr     string
	found    bool
	expires  time.Time
}

func newCache(ttl time.Duration, size int) *cache {
	return &cache{ttl: ttl, size: size, order: list.New(), items: make(map[string]*list.Element)}
}

func (c *cache) get(username string, now time.Time) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[username]
	if !ok {
		return entry{}, false
	}
	e := el.Value.(*entry) // only put stores values, all *entry
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, username)
		return entry{}, false
	}
	c.order.MoveToFront(el)
	return *e, true
}

func (c *cache) put(username, addr string, found bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &entry{username: username, addr: addr, found: found, expires: now.Add(c.ttl)}
	if el, ok := c.items[username]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.items[username] = c.order.PushFront(e)
	if c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry).username)
	}
}
