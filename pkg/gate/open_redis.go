package gate

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/textutil"
)

// OpenRedisStore opens the Redis-backed Store that cfg.RedisURL
// (DEFENDER_REDIS_URL) names, under cfg.KeyPrefix, with clients sized for
// cfg.StoreTimeout. The URL selects the deployment:
//
//	redis://[user:pass@]host:6379/0          one Redis: RedisStore
//	rediss://...                             the same over TLS
//	redis+cluster://[user:pass@]h1:7000,h2:7001[?opts]
//	                                         Redis Cluster: RedisClusterStore (any
//	                                         reachable nodes; the rest are discovered)
//	redis://h1:7000,redis://h2:7001          the same, as a comma-separated URL list
//	redis+sentinel://[user:pass@]s1:26379,s2:26379/mymaster[/0]
//	                                         a master watched by Redis Sentinel:
//	                                         RedisStore over go-redis' failover client
//
// Query options of go-redis' ParseURL/ParseClusterURL (pool_size,
// dial_timeout, ...) apply. The returned io.Closer closes the client; it
// is also a redis.UniversalClient, for health checks (Ping).
func OpenRedisStore(cfg Config) (Store, io.Closer, error) {
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
		return NewRedisStore(client, cfg.KeyPrefix), client, nil
	case strings.HasSuffix(scheme, "+cluster") || strings.Contains(raw, ","):
		opt, err := redisClusterOptions(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("DEFENDER_REDIS_URL: %w", err)
		}
		tuneRedisCluster(opt, cfg.StoreTimeout)
		client := redis.NewClusterClient(opt)
		s, err := NewRedisClusterStore(client, cfg.KeyPrefix)
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
			err = textutil.URLParseError(raw, err)
		}
		return nil, nil, fmt.Errorf("DEFENDER_REDIS_URL: %w", err)
	}
	opt.ContextTimeoutEnabled = true
	client := redis.NewClient(opt)
	return NewRedisStore(client, cfg.KeyPrefix), client, nil
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
			return nil, textutil.URLParseError(raw, err)
		}
		first = u
		hosts = strings.Split(u.Host, ",")
	} else {
		for i, part := range strings.Split(raw, ",") {
			u, err := url.Parse(strings.TrimSpace(part))
			if err != nil {
				return nil, fmt.Errorf("URL %d of the list: %w", i+1, textutil.URLParseError(part, err))
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

// redisSentinelOptions reads redis+sentinel://[user:pass@]s1,s2/master[/db].
func redisSentinelOptions(raw string) (*redis.FailoverOptions, error) {
	u, err := url.Parse(strings.Replace(raw, "redis+sentinel://", "redis://", 1))
	if err != nil {
		return nil, textutil.URLParseError(raw, err)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return nil, fmt.Errorf("path %q: want redis+sentinel://host:26379,.../<master name>[/<db>]", u.Path)
	}
	opt := &redis.FailoverOptions{MasterName: parts[0], SentinelAddrs: strings.Split(u.Host, ",")}
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
