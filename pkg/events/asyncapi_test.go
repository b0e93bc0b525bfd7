package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// asyncAPIPath is the machine-readable description of the events, the
// README's and subscribers' reference.
const asyncAPIPath = "../../docs/events.asyncapi.json"

// asyncAPI is what the tests read of the document: its channels, each with
// one message whose payload is a schema of components.schemas.
type asyncAPI struct {
	Channels map[string]struct {
		Address    string `json:"address"`
		Parameters map[string]struct {
			Enum []string `json:"enum"`
			Ref  string   `json:"$ref"`
		} `json:"parameters"`
		Messages map[string]struct {
			Ref string `json:"$ref"`
		} `json:"messages"`
	} `json:"channels"`
	Components struct {
		Parameters map[string]struct {
			Enum []string `json:"enum"`
		} `json:"parameters"`
		Messages map[string]struct {
			Payload struct {
				Ref string `json:"$ref"`
			} `json:"payload"`
		} `json:"messages"`
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
			Enum       []string                   `json:"enum"`
		} `json:"schemas"`
	} `json:"components"`
}

// channel is one channel of the document, ready to match subjects.
type channel struct {
	name   string
	re     *regexp.Regexp // the address, its parameter a group
	param  string         // the parameter's name: the event field it equals
	schema *jsonschema.Schema
	ref    string // "#/components/schemas/<name>"
}

// loadAsyncAPI reads the document and compiles each channel's payload
// schema, with formats (date-time, ipv4, ipv6) asserted.
func loadAsyncAPI(t *testing.T) (*asyncAPI, []channel) {
	t.Helper()
	raw, err := os.ReadFile(asyncAPIPath)
	require.NoError(t, err)
	var doc asyncAPI
	require.NoError(t, json.Unmarshal(raw, &doc))
	parsed, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	require.NoError(t, err)
	const url = "file:///events.asyncapi.json"
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource(url, parsed))

	var chans []channel
	for name, ch := range doc.Channels {
		require.Len(t, ch.Parameters, 1, "channel %s has one parameter", name)
		require.Len(t, ch.Messages, 1, "channel %s has one message", name)
		ch0 := channel{name: name}
		pattern := regexp.QuoteMeta(ch.Address)
		for p, def := range ch.Parameters {
			enum := def.Enum
			if def.Ref != "" {
				enum = doc.Components.Parameters[strings.TrimPrefix(def.Ref, "#/components/parameters/")].Enum
			}
			require.NotEmpty(t, enum, "parameter %s of %s lists its values", p, name)
			pattern = strings.Replace(pattern, regexp.QuoteMeta("{"+p+"}"), "("+strings.Join(enum, "|")+")", 1)
			ch0.param = p
		}
		ch0.re = regexp.MustCompile("^" + pattern + "$")
		for _, m := range ch.Messages {
			msg, ok := doc.Components.Messages[strings.TrimPrefix(m.Ref, "#/components/messages/")]
			require.True(t, ok, "channel %s: message %s is defined", name, m.Ref)
			ch0.ref = msg.Payload.Ref
		}
		ch0.schema, err = c.Compile(url + ch0.ref)
		require.NoError(t, err, "schema %s", ch0.ref)
		chans = append(chans, ch0)
	}
	return &doc, chans
}

// schemasByChannel maps each channel's name to its payload schema.
func schemasByChannel(chans []channel) map[string]*jsonschema.Schema {
	out := map[string]*jsonschema.Schema{}
	for _, ch := range chans {
		out[ch.name] = ch.schema
	}
	return out
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(v any) []string {
	var out []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// TestAsyncAPIListsEveryField holds the document to the Go types: every
// field of events.Attempt and events.Block, and every block kind, is in
// it, and nothing else is.
func TestAsyncAPIListsEveryField(t *testing.T) {
	doc, chans := loadAsyncAPI(t)
	schemas := doc.Components.Schemas
	assert.Equal(t, jsonFields(events.Attempt{}), keys(schemas["attempt"].Properties))
	assert.Equal(t, jsonFields(events.Block{}), keys(schemas["blockEvent"].Properties))

	var kinds []string
	for _, k := range gate.Kinds {
		kinds = append(kinds, string(k))
	}
	assert.Equal(t, kinds, schemas["kind"].Enum)
	assert.Equal(t, kinds, doc.Components.Parameters["kind"].Enum)

	// Every subject the package names is a channel's, under the default prefix.
	s := events.Subjects{}
	subjects := []string{s.Attempt("success"), s.Attempt("failure"), s.Attempt("blocked")}
	for _, k := range kinds {
		subjects = append(subjects, s.Block(k), s.Unblock(k), s.ObserveBlock(k), s.ObserveUnblock(k))
	}
	for _, subj := range subjects {
		n := 0
		for _, ch := range chans {
			if ch.re.MatchString(subj) {
				n++
			}
		}
		assert.Equal(t, 1, n, "%s is on exactly one channel", subj)
	}
	assert.Len(t, chans, 5, "attempts, blocks, unblocks and observe mode's two")
}

// TestEventsMatchAsyncAPI publishes every kind of event through real gates
// (enforce, combo, spraying from a private, a shared and an IPv6 source,
// smart lockout, observe mode, and a store that does not answer) and an
// embedded NATS, and validates every message the stream holds against the
// schema of the channel its subject is on: no field the document does not
// list, none missing, each of the right type. Each channel, each field and
// each kind of block must be met at least once, so the test covers it all.
func TestEventsMatchAsyncAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("needs NATS")
	}
	doc, chans := loadAsyncAPI(t)
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Gate: "schema-gate"})
	require.NoError(t, err)
	stop := runPublisher(t, p)
	ctx := t.Context()

	newGate := func(cfg gate.Config, store gate.Store) *gate.Gate {
		if _, down := store.(*gate.RedisStore); !down {
			cfg.StoreTimeout = time.Minute // a loaded machine must not make the memory store "late"
		}
		g, err := gate.New(cfg, store, gate.WithEmitter(p))
		require.NoError(t, err)
		t.Cleanup(func() { _ = g.Close(context.Background()) })
		return g
	}
	memory := func() gate.Store { return gate.NewMemoryStore(gate.MemoryOptions{}) }
	at := func(ip, user string) gate.Attempt {
		return gate.Attempt{IP: netip.MustParseAddr(ip), Username: user, Path: "/login", UserAgent: "schema-test"}
	}
	fail := func(g *gate.Gate, ip, user string, n int) {
		for range n {
			g.Record(ctx, at(ip, user), false)
		}
	}

	// Enforce: failures, the block of the IP and username, a refused
	// attempt, a success, an admin's unblock and permanent block, the
	// user's own unblock.
	cfg := gate.DefaultConfig()
	cfg.SprayLimit, cfg.SprayNetLimit = 2, 2
	g := newGate(cfg, memory())
	fail(g, "192.0.2.10", "alice", 5)
	g.Record(ctx, at("192.0.2.11", "bob"), true)
	_, err = g.Unblock(ctx, gate.KindIP, "192.0.2.10")
	require.NoError(t, err)
	require.NoError(t, g.Block(ctx, gate.KindUsername, "carol", 0))
	lifted, err := g.UnblockByUser(ctx, "alice", "")
	require.NoError(t, err)
	require.True(t, lifted)
	// Spraying: from one address, from a carrier-grade NAT address (a
	// report), and over rotating IPv6 /64s of one /48.
	for i := range 3 {
		user := fmt.Sprintf("sprayed%d", i)
		g.Record(ctx, at("192.0.2.30", user), false)
		g.Record(ctx, at("100.64.0.1", user), false)
		g.Record(ctx, at(fmt.Sprintf("2001:db8:1:%d::1", i+1), user), false)
	}

	// Combo mode: the pair.
	combo := gate.DefaultConfig()
	combo.LockOutByIPAndUsername = true
	fail(newGate(combo, memory()), "192.0.2.20", "dave", 4)

	// Smart lockout: a familiar source's failures.
	smart := gate.DefaultConfig()
	smart.SmartLockout = true
	sg := newGate(smart, memory())
	sg.Record(ctx, at("192.0.2.40", "erin"), true)
	fail(sg, "192.0.2.40", "erin", 4)

	// Observe mode: would-be blocks, and a success begun before the block
	// that lifts it.
	observe := gate.DefaultConfig()
	observe.Mode = gate.ModeObserve
	og := newGate(observe, memory())
	tk, d := og.Begin(ctx, at("192.0.2.51", "frank")) // two phases: begun before the block
	require.True(t, d.Allowed)
	fail(og, "192.0.2.50", "frank", 4)
	tk.Finish(ctx, true)

	// A store that does not answer: the local limiter decides and blocks.
	down := gate.DefaultConfig()
	redis.SetLogger(&logging.VoidLogger{}) // its dial errors are expected here
	client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	fail(newGate(down, gate.NewRedisStore(client, "down", down.Policy())), "192.0.2.60", "grace", 5)

	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, p.Close(closeCtx))
	require.NoError(t, stop())
	published := p.Stats().Published
	msgs := streamMsgs(t, env.js, "", int(published))
	require.GreaterOrEqual(t, len(msgs), int(published))

	perChannel := map[string]int{}
	kinds := map[string]bool{}           // of blocks
	seen := map[string]map[string]bool{} // schema → fields met
	for _, m := range msgs {
		var on []channel
		for _, ch := range chans {
			if ch.re.MatchString(m.Subject()) {
				on = append(on, ch)
			}
		}
		require.Len(t, on, 1, "subject %s is on exactly one channel", m.Subject())
		ch := on[0]
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(m.Data())))
		require.NoError(t, err)
		if !assert.NoError(t, ch.schema.Validate(v), "%s: %s", m.Subject(), m.Data()) {
			continue
		}
		perChannel[ch.name]++
		var fields map[string]any
		require.NoError(t, json.Unmarshal(m.Data(), &fields))
		param := fields[ch.param]
		if ch.param == "result" || ch.param == "kind" {
			last := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
			assert.Equal(t, last, param, "%s: the subject's last token is the event's %s", m.Subject(), ch.param)
		}
		base := "attempt"
		if ch.name != "attempt" {
			base = "blockEvent"
			kinds[fmt.Sprint(fields["kind"])] = true
		}
		if seen[base] == nil {
			seen[base] = map[string]bool{}
		}
		for f := range fields {
			seen[base][f] = true
		}
	}
	assert.Equal(t, keys(doc.Channels), keys(perChannel), "every channel gets events")
	assert.Equal(t, sortedCopy(doc.Components.Parameters["kind"].Enum), keys(kinds), "blocks of every kind")
	for _, s := range []string{"attempt", "blockEvent"} {
		assert.Equal(t, keys(doc.Components.Schemas[s].Properties), keys(seen[s]), "every field of %s is met", s)
	}
}

// TestAsyncAPIRejects: the schemas are strict, so that the test above
// fails on a field the document does not list, one missing or one of the
// wrong type, and on an event sent to another kind's channel.
func TestAsyncAPIRejects(t *testing.T) {
	_, chans := loadAsyncAPI(t)
	schema := schemasByChannel(chans)
	now := time.Now()
	blk := events.NewBlock(gate.TransitionRecord{Time: now, Kind: gate.KindIP, Subject: "192.0.2.1", Blocked: true,
		Until: now.Add(time.Minute), Failures: 4, Reason: gate.ReasonAuto, IP: "192.0.2.1"}, "g")
	att := events.NewAttempt(gate.AttemptRecord{Time: now, IP: "192.0.2.1", Username: "alice", Outcome: gate.OutcomeFailure}, "g")
	tests := []struct {
		name    string
		channel string
		event   any
		edit    func(map[string]any)
		valid   bool
	}{
		{"block as is", "block", blk, func(map[string]any) {}, true},
		{"attempt as is", "attempt", att, func(map[string]any) {}, true},
		{"unknown field", "block", blk, func(m map[string]any) { m["country"] = "NL" }, false},
		{"missing id", "block", blk, func(m map[string]any) { delete(m, "id") }, false},
		{"id not a UUIDv7", "attempt", att, func(m map[string]any) { m["id"] = "42" }, false},
		{"time not RFC 3339", "attempt", att, func(m map[string]any) { m["time"] = "yesterday" }, false},
		{"ip not an address", "block", blk, func(m map[string]any) { m["ip"] = "example.com" }, false},
		{"unknown kind", "block", blk, func(m map[string]any) { m["kind"] = "country" }, false},
		{"count as string", "attempt", att, func(m map[string]any) { m["ip_failures"] = "1" }, false},
		{"block on the unblock channel", "unblock", blk, func(map[string]any) {}, false},
		{"real block on the observe channel", "observeBlock", blk, func(map[string]any) {}, false},
		{"would-be block on the block channel", "block", blk, func(m map[string]any) { m["observe"] = true }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(tc.event)
			require.NoError(t, err)
			var m map[string]any
			require.NoError(t, json.Unmarshal(data, &m))
			tc.edit(m)
			data, err = json.Marshal(m)
			require.NoError(t, err)
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(data)))
			require.NoError(t, err)
			err = schema[tc.channel].Validate(v)
			if tc.valid {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// TestREADMEEventsMatchAsyncAPI: the events the README shows subscribers
// are valid ones, on the channel of their type.
func TestREADMEEventsMatchAsyncAPI(t *testing.T) {
	_, chans := loadAsyncAPI(t)
	schema := schemasByChannel(chans)
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	n := 0
	for _, block := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		var ev struct {
			V       int    `json:"v"`
			Type    string `json:"type"`
			Observe bool   `json:"observe"`
		}
		if json.Unmarshal([]byte(block[1]), &ev) != nil || ev.V != events.Version {
			continue // not an event
		}
		channel := ev.Type
		if ev.Observe && ev.Type != "attempt" {
			channel = "observe" + strings.ToUpper(ev.Type[:1]) + ev.Type[1:]
		}
		require.Contains(t, schema, channel, block[1])
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(block[1]))
		require.NoError(t, err)
		assert.NoError(t, schema[channel].Validate(v), block[1])
		n++
	}
	assert.GreaterOrEqual(t, n, 2, "the README shows an attempt and a block")
}
