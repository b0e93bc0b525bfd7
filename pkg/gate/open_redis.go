package gate

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/redact"
)

// OpenRedisStore opens the Redis-backed Store that cfg.RedisURL
// (DEFENDER_REDIS_URL) names, under cfg.KeyPrefix and applying
// cfg.Policy(), with clients sized for cfg.StoreTimeout. The URL selects
// the deployment:
//
//	redis://[user:pass@]host:6379/0          one Redis: RedisStore
//	rediss://...                             the same over TLS
//	redis+cluster://[user:pass@]h1:7000,h2:7001[?opts]
//	                                         Redis Cluster: RedisClusterStore (any
//	                                         reachable nodes; the rest are discovered)
//	redis://h1:7000,redis://h2:7001          the same, as a comma-separated URL list
//	redis+sentinel://[user:pass@]s1:26379,s2:26379/mymaster[/0][?opts]
//	                                         a master watched by Redis Sentinel:
//	                                         RedisStore over go-redis' failover client
//	                                         (user:pass are the master's)
//
// Query options of go-redis' ParseURL, ParseClusterURL or ParseFailoverURL
// (pool_size, dial_timeout, ...) apply; unknown ones are refused. A comma
// in a password makes no list, but in a list it is ambiguous and
// refused (write it %2C there). The client is returned for health checks
// (Ping, CheckRedisMemoryPolicy); closing it releases the store.
func OpenRedisStore(cfg Config) (Store, redis.UniversalClient, error) {
	raw := strings.TrimSpace(cfg.RedisURL)
	if raw == "" {
		return nil, nil, errors.New("DEFENDER_REDIS_URL: empty")
	}
	scheme, _, _ := strings.Cut(raw, "://")
	switch {
	case scheme == "redis+sentinel":
		opt, err := redisSentinelOptions(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("DEFENDER_REDIS_URL: %w", err)
		}
		opt.ContextTimeoutEnabled = true
		client := redis.NewFailoverClient(opt)
		return NewRedisStore(client, cfg.KeyPrefix, cfg.Policy()), client, nil
	case strings.HasSuffix(scheme, "+cluster") || strings.Contains(withoutUserinfo(raw), ","):
		opt, err := redisClusterOptions(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("DEFENDER_REDIS_URL: %w", err)
		}
		tuneRedisCluster(opt, cfg.StoreTimeout)
		client := redis.NewClusterClient(opt)
		s, err := NewRedisClusterStore(client, cfg.KeyPrefix, cfg.Policy())
		if err != nil {
			client.Close()
			return nil, nil, err
		}
		return s, client, nil
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // it quotes the URL, password included
			err = redact.URLError(raw, err)
		}
		return nil, nil, fmt.Errorf("DEFENDER_REDIS_URL: %w", err)
	}
	opt.ContextTimeoutEnabled = true
	client := redis.NewClient(opt)
	return NewRedisStore(client, cfg.KeyPrefix, cfg.Policy()), client, nil
}

// redisClusterOptions reads a redis+cluster:// URL or a comma-separated
// list of redis:// URLs (credentials and options from the first) as
// go-redis' ParseClusterURL form redis://h1?addr=h2&addr=h3.
func redisClusterOptions(raw string) (*redis.ClusterOptions, error) {
	var hosts []string
	var first *url.URL
	if scheme, rest, _ := strings.Cut(raw, "://"); strings.HasSuffix(scheme, "+cluster") {
		u, err := url.Parse(strings.TrimSuffix(scheme, "+cluster") + "://" + rest)
		if err != nil {
			return nil, redact.URLError(raw, err)
		}
		first = u
		hosts = strings.Split(u.Host, ",")
	} else {
		for i, part := range strings.Split(raw, ",") {
			u, err := url.Parse(strings.TrimSpace(part))
			if err != nil {
				// raw, not part: a password cut at a comma has no '@' left
				return nil, fmt.Errorf("URL %d of the list: %w", i+1, redact.URLError(raw, err))
			}
			if i == 0 {
				first = u
			}
			hosts = append(hosts, u.Host)
		}
	}
	if first.Scheme != "redis" && first.Scheme != "rediss" {
		return nil, fmt.Errorf("scheme %q is not redis+cluster, rediss+cluster, redis or rediss", first.Scheme)
	}
	if p := strings.Trim(first.Path, "/"); p != "" && p != "0" {
		return nil, fmt.Errorf("redis cluster has only database 0, not %q", p)
	}
	q := first.Query()
	for _, h := range hosts[1:] {
		if h == "" {
			return nil, errors.New("empty host in the list")
		}
		q.Add("addr", h)
	}
	u := url.URL{Scheme: first.Scheme, User: first.User, Host: hosts[0], RawQuery: q.Encode()}
	opt, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("parse cluster URL: %w", err)
	}
	return opt, nil
}

// tuneRedisCluster fits a cluster client to the gate's deadline: a dead
// master must fail a call fast (one dial, no dial retries) so that the
// store reloads the slot map and finds the promoted replica.
func tuneRedisCluster(opt *redis.ClusterOptions, storeTimeout time.Duration) {
	opt.ContextTimeoutEnabled = true
	if opt.DialTimeout == 0 || opt.DialTimeout > 5*time.Second {
		opt.DialTimeout = max(storeTimeout, 100*time.Millisecond)
	}
	if opt.DialerRetries == 0 {
		opt.DialerRetries = 1
	}
	if opt.ClusterStateReloadInterval == 0 {
		opt.ClusterStateReloadInterval = 10 * time.Second
	}
}

// withoutUserinfo is raw without the user information of its first URL,
// whose password may hold commas (a valid URL), which do not make a list.
func withoutUserinfo(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return raw
	}
	return scheme + "://" + rest[at+1:]
}

// redisSentinelOptions reads
// redis+sentinel://[user:pass@]s1,s2/master[/db][?opts]: the credentials
// are the master's, the query options go-redis' ParseFailoverURL's.
func redisSentinelOptions(raw string) (*redis.FailoverOptions, error) {
	u, err := url.Parse(strings.Replace(raw, "redis+sentinel://", "redis://", 1))
	if err != nil {
		return nil, redact.URLError(raw, err)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return nil, fmt.Errorf("path %q: want redis+sentinel://host:26379,.../<master name>[/<db>]", u.Path)
	}
	hosts := strings.Split(u.Host, ",")
	q := u.Query()
	for i, h := range hosts {
		if h == "" {
			return nil, errors.New("empty host in the list")
		}
		if i > 0 {
			q.Add("addr", h)
		}
	}
	// The options without credentials or path, which are ours to read.
	opts := url.URL{Scheme: "redis", Host: hosts[0], RawQuery: q.Encode()}
	opt, err := redis.ParseFailoverURL(opts.String())
	if err != nil {
		return nil, fmt.Errorf("parse sentinel URL: %w", err)
	}
	opt.MasterName, opt.SentinelAddrs = parts[0], hosts
	if len(parts) == 2 {
		if opt.DB, err = strconv.Atoi(parts[1]); err != nil {
			return nil, fmt.Errorf("database %q: %w", parts[1], err)
		}
	}
	if u.User != nil {
		opt.Username = u.User.Username()
		opt.Password, _ = u.User.Password()
	}
	return opt, nil
}

// ErrRedisEvicts is wrapped by CheckRedisMemoryPolicy's error when Redis
// may evict the gate's keys.
var ErrRedisEvicts = errors.New("redis may evict block keys")

// CheckRedisMemoryPolicy reads maxmemory-policy on Redis (on every master
// of a cluster) and returns an error wrapping ErrRedisEvicts unless it is
// noeviction, Redis's default: with an eviction policy, a flood of new
// usernames that fills Redis's memory makes it drop keys, block keys
// among them (allkeys-*), or those that expire, which every timed block
// does (volatile-*), and each dropped block lets its attacker in again.
// With noeviction a full Redis refuses the gate's counting scripts
// instead, and the gate decides with its local limiter (DEFENDER_FAIL_MODE
// local) until keys expire: blocks outlive counters. An error not
// wrapping ErrRedisEvicts means the policy could not be read (CONFIG is
// often disabled on managed Redis); binaries log either as a warning.
func CheckRedisMemoryPolicy(ctx context.Context, client redis.UniversalClient) error {
	check := func(ctx context.Context, c *redis.Client) error {
		vals, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			return fmt.Errorf("read maxmemory-policy of %s: %w", c.Options().Addr, err)
		}
		if p := vals["maxmemory-policy"]; p != "noeviction" {
			return fmt.Errorf("%w: %s has maxmemory-policy %s; set it to noeviction (and size maxmemory for the subjects tracked)",
				ErrRedisEvicts, c.Options().Addr, p)
		}
		return nil
	}
	switch c := client.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		var errs []error
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if err := check(ctx, m); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("read maxmemory-policy: %w", err))
		}
		return errors.Join(errs...)
	case *redis.Client:
		return check(ctx, c)
	}
	return fmt.Errorf("read maxmemory-policy: %T is not a go-redis client or cluster client", client)
}
