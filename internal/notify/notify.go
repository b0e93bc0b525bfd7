// Package notify is the notifier's work (cmd/notifier): it takes the
// block events of the DEFENDER stream through a durable consumer that
// every instance shares, mails the user whose username was blocked (at
// most once per user per interval, with a link that lifts the block) and
// alerts the admins by webhook.
//
// Delivery: an event's mail and its webhook calls go independently (the
// admins hear of a block whose mail cannot go yet); the event is
// acknowledged once both are done or given up on; until then NATS
// redelivers it (to any instance). What each event has done is kept in a
// key-value bucket (DEFENDER_NOTIFY_DONE) by event id, so a redelivered
// event, or one whose instance died after sending, is not sent again: at
// most the one mail in flight when an instance died goes twice, with the
// same Message-ID.
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/defender-go/defender/internal/notify/mail"
	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// The key-value buckets the notifier keeps in JetStream, shared by every
// instance.
const (
	// BucketDone holds what each event has done ("mail_<id>", "hook_<id>").
	BucketDone = "DEFENDER_NOTIFY_DONE"
	// BucketUsers holds a key per user mailed within DEFENDER_MAIL_EVERY.
	BucketUsers = "DEFENDER_NOTIFY_USERS"
	// BucketHours counts the mails of each hour.
	BucketHours = "DEFENDER_NOTIFY_HOURS"
	// BucketLinks holds the unlock links used.
	BucketLinks = "DEFENDER_NOTIFY_LINKS"
)

// Options configure a Notifier.
type Options struct {
	Subjects events.Subjects
	// Durable is the consumer's name, shared by every instance
	// (DEFENDER_NOTIFY_CONSUMER, "notifier").
	Durable string
	// AckWait is how long NATS waits for an instance that took an event
	// before handing it to another: events in progress are kept alive
	// meanwhile, so it only delays the events of an instance that died.
	AckWait time.Duration
	// Concurrency is how many events an instance handles at once.
	Concurrency int
	// Mail sends the mails; nil: no mails.
	Mail *mail.Sender
	// Lookup finds a user's address. Without it the username is the
	// address only when MailToUsername is set (else no mail).
	Lookup         *mail.Lookup
	MailToUsername bool
	// MailEvery is the least time between two mails to one user.
	MailEvery time.Duration
	// MailsPerHour caps the mails sent by every instance together in one
	// clock hour (0: no cap); a send that fails takes none of it.
	MailsPerHour int
	// Links makes unlock links for the mails; nil: none.
	Links *Links
	// Hooks calls the admins' webhooks; nil: none.
	Hooks *webhook.Sender
	// Log and Registerer default to slog.Default and none.
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Defaults of Options.
const (
	DefaultDurable     = "notifier"
	DefaultAckWait     = time.Minute
	DefaultConcurrency = 256
	DefaultMailEvery   = time.Hour
	doneFor            = 7 * 24 * time.Hour // the stream's default age limit
)

// Notifier handles block events.
type Notifier struct {
	o      Options
	cons   jetstream.Consumer
	done   jetstream.KeyValue
	users  jetstream.KeyValue
	hours  jetstream.KeyValue
	links  jetstream.KeyValue
	dead   jetstream.KeyValue
	m      *metrics
	log    *slog.Logger
	active sync.WaitGroup
	// sending is held from a mail's send until it is marked done.
	sending sync.Mutex
	// stopping is set when Run's context ends: the handlers finish what
	// they started, and start no new send.
	stopping atomic.Bool
}

// New creates (or updates) the consumer and the buckets. A new consumer
// starts at the events published from now on: a first start does not
// mail last week's blocks.
func New(ctx context.Context, js jetstream.JetStream, o Options) (*Notifier, error) {
	if o.Durable == "" {
		o.Durable = DefaultDurable
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MailEvery <= 0 {
		o.MailEvery = DefaultMailEvery
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if err := o.Subjects.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{o: o, m: newMetrics(o.Registerer), log: o.Log}
	var err error
	for _, b := range []struct {
		kv   *jetstream.KeyValue
		name string
		ttl  time.Duration
	}{{&n.done, BucketDone, doneFor}, {&n.users, BucketUsers, o.MailEvery}, {&n.hours, BucketHours, 2 * time.Hour}, {&n.links, BucketLinks, linksFor(o.Links)}, {&n.dead, BucketDead, doneFor}} {
		if *b.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b.name, TTL: b.ttl, History: 1}); err != nil {
			return nil, fmt.Errorf("key-value bucket %s: %w", b.name, err)
		}
	}
	n.cons, err = js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       o.Durable,
		Description:   "defender notifier: mails and webhooks on blocks",
		FilterSubject: o.Subjects.Blocks(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckWait:       o.AckWait,
		MaxAckPending: 4 * o.Concurrency,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", o.Durable, o.Subjects.Blocks(), err)
	}
	return n, nil
}

// linksFor is how long a used link is remembered: as long as it is valid.
func linksFor(l *Links) time.Duration {
	if l == nil {
		return time.Hour
	}
	return l.TTL() + time.Minute
}

// UnlockPage is the page the mails' links open, lifting blocks through u.
func (n *Notifier) UnlockPage(u Unlocker) *UnlockPage {
	return &UnlockPage{links: n.o.Links, used: n.links, unlock: u, log: n.log, m: n.m}
}

// Run handles events until ctx ends, then waits up to grace for the
// events in hand (those it cannot finish are redelivered later).
func (n *Notifier) Run(ctx context.Context, grace time.Duration) error {
	// One message buffered: a message waits in no buffer while the
	// handlers are busy, where no keep-alive reaches it and NATS would
	// hand it out again after AckWait.
	it, err := n.cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("consume %s: %w", n.o.Durable, err)
	}
	// When ctx ends: no new pull and no new send, and the handlers, which
	// outlive ctx by grace to finish what they started, are cut then.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopped := context.AfterFunc(ctx, func() {
		n.stopping.Store(true)
		it.Stop()
		time.AfterFunc(grace, cancel)
	})
	defer stopped()
	slots := make(chan struct{}, n.o.Concurrency)
	for {
		slots <- struct{}{} // a free slot first: no message waits for one
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrNoHeartbeat) && ctx.Err() == nil {
			// NATS sent nothing for two heartbeats (a pause, or a pull it
			// lost): the iterator pulls again on the next call. Returning
			// here stopped the notifier for good.
			<-slots
			n.m.heartbeats.Inc()
			n.log.Warn("no heartbeat from NATS on the notifier's pull; pulling again", "durable", n.o.Durable)
			continue
		}
		if err != nil {
			n.active.Wait()
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("consume %s: %w", n.o.Durable, err)
		}
		n.active.Go(func() {
			defer func() { <-slots }()
			n.handle(hctx, msg)
		})
	}
}

// pullExpiry is how long one pull for the next event waits on the
// server: a pull the server lost, or answered while the client missed
// it, is replaced within it (and its heartbeats, every half of it, tell
// a silent server). nats.go's default, 30 s, held events that long.
const pullExpiry = 5 * time.Second

// handle does what one event asks, then acknowledges it, or leaves it
// for redelivery with a delay that grows with its deliveries.
func (n *Notifier) handle(ctx context.Context, msg jetstream.Msg) {
	b, err := events.DecodeBlock(msg.Data())
	if err != nil {
		n.m.events.WithLabelValues("malformed").Inc()
		n.log.Warn("terminating a malformed block event", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	// Only real blocks of the store: an observe-mode would-be block is
	// published elsewhere, and a local one (one gate process, while its
	// store was away) is followed by the store's own once it learns.
	if b.Type != events.TypeBlock || b.Observe || b.Local {
		n.m.events.WithLabelValues("skipped").Inc()
		_ = msg.Ack()
		return
	}
	defer n.keepAlive(ctx, msg)()
	if err := n.notify(ctx, &b); err != nil {
		n.m.events.WithLabelValues("retried").Inc()
		delay := retryDelay(msg)
		n.log.Warn("notification failed, will retry", "event", b.ID, "kind", b.Kind, "err", err, "retry_in", delay.String())
		_ = msg.NakWithDelay(delay)
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		n.log.Warn("could not acknowledge an event; it may be redelivered (its work is remembered)", "event", b.ID, "err", err)
	}
}

// notify mails and calls the webhooks for b, each at most once per event.
// The two go their own ways: the admins hear of a block while its mail
// cannot go (SMTP or the address lookup down), and a retry of the mail
// calls no webhook again. It returns once both are done or given up on,
// with the error of either, which leaves the event for a retry.
func (n *Notifier) notify(ctx context.Context, b *events.Block) error {
	type result struct {
		did bool
		err error
	}
	var hooked chan result
	if n.o.Hooks != nil {
		hooked = make(chan result, 1)
		go func() {
			did, err := n.once(ctx, "hook_"+digest(b.ID), func(key string) error {
				if err := n.o.Hooks.Deliver(ctx, *b); err != nil {
					return err
				}
				n.remember(ctx, key)
				return nil
			})
			hooked <- result{did, err}
		}()
	}
	var mailed result
	if n.o.Mail != nil && b.Kind == string(gate.KindUsername) {
		mailed.did, mailed.err = n.once(ctx, "mail_"+digest(b.ID), func(key string) error { return n.mailUser(ctx, b, key) })
	}
	var hook result
	if hooked != nil {
		hook = <-hooked
	}
	if err := errors.Join(mailed.err, hook.err); err != nil {
		return err
	}
	if mailed.did || hook.did {
		n.m.events.WithLabelValues("done").Inc()
	} else {
		n.m.events.WithLabelValues("duplicate").Inc()
	}
	return nil
}

// once runs do(key) unless the bucket says the work of key was done, and
// reports whether it ran; do marks key done once its work is.
func (n *Notifier) once(ctx context.Context, key string, do func(key string) error) (bool, error) {
	done, err := n.isDone(ctx, key)
	if err != nil || done {
		return false, err
	}
	return true, do(key)
}

// isDone reports whether the bucket says the work of key was done.
func (n *Notifier) isDone(ctx context.Context, key string) (bool, error) {
	if _, err := n.done.Get(ctx, key); err == nil {
		return true, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, fmt.Errorf("read %s: %w", BucketDone, err)
	}
	return false, nil
}

// remember marks the work of key done, for every instance.
func (n *Notifier) remember(ctx context.Context, key string) {
	if _, err := n.done.Put(ctx, key, []byte{'1'}); err != nil {
		n.log.Warn("could not remember a notification; a redelivery may repeat it", "key", key, "err", err)
	}
}

// mailUser mails the user whose username b blocked: at most once per
// user per MailEvery, within the hourly cap, when an address is known,
// and marks key done. An error leaves the event for a retry.
//
// An instance sends one mail at a time, and marks it done before the
// next: an instance that dies has at most one mail in flight, the one a
// redelivery may send again (with the same Message-ID). Sends one after
// the other still go fast: 500 blocks made 500 mails in 0.57 s through an
// SMTP server on the same machine (about 870 a second; a relay farther
// away gives one mail per few of its round trips), far above
// DEFENDER_MAIL_MAX_PER_HOUR's default. Run more instances for more.
func (n *Notifier) mailUser(ctx context.Context, b *events.Block, key string) error {
	user := b.Subject
	// Only the failures' own blocks mail: an admin's (or the
	// blacklist's) is deliberate, and its unlock link would undo it.
	if b.Reason != string(gate.ReasonAuto) {
		return n.settled(ctx, key, "not_auto")
	}
	// Nor does a block that has ended, however its mail failed before:
	// an attacker may choose usernames whose lookup always fails, and
	// their events must not be retried for days.
	if blockEnded(b, time.Now()) {
		return n.settled(ctx, key, "ended")
	}
	if taken, err := n.takeSlot(ctx, "u_"+digest(user), b.ID); err != nil {
		return err
	} else if !taken {
		return n.settled(ctx, key, "rate_limited_user")
	}
	to, found, err := n.address(ctx, user)
	if err != nil && mail.Permanent(err) {
		// The site refuses this name, or answers an address that is none.
		n.log.Warn("no address for a blocked user: the lookup refused it", "event", b.ID, "err", err)
		found, err = false, nil
	}
	if err != nil {
		return fmt.Errorf("look up the address: %w", err)
	}
	if !found {
		return n.settled(ctx, key, "no_address")
	}
	// The interval holds per address too: a site that signs in by
	// username or by address has two names for one mailbox.
	if taken, err := n.takeSlot(ctx, "a_"+digest(strings.ToLower(to)), b.ID); err != nil {
		return err
	} else if !taken {
		return n.settled(ctx, key, "rate_limited_user")
	}
	m := mail.Message{To: to, Username: user, IP: b.IP, Failures: b.Failures, Time: b.Time, Until: b.Until, EventID: b.ID}
	if n.o.Links != nil && !b.Permanent && b.Until != nil {
		// A permanent block is the operator's policy: its mail says to
		// ask them, and carries no link.
		if u := n.o.Links.URL(user, b.ID, *b.Until); u != "" {
			m.UnlockURL, m.UnlockTTL = u, n.o.Links.TTL()
		}
	}
	n.sending.Lock()
	defer n.sending.Unlock()
	if n.stopping.Load() {
		return errors.New("stopping: the mail is left for another instance")
	}
	// A copy of the event (redelivered while this one waited) may have
	// sent it meanwhile.
	if done, err := n.isDone(ctx, key); err != nil {
		return err
	} else if done {
		return nil
	}
	// The hour's cap is taken by a mail about to go, and given back if it
	// does not go: sends that fail while SMTP is down, and their retries,
	// take none of it.
	hour := hourKey(time.Now())
	if ok, err := n.countHour(ctx, hour, 1); err != nil {
		return err
	} else if !ok {
		n.log.Warn("mail cap reached for this hour: a blocked user is not mailed", "cap", n.o.MailsPerHour, "event", b.ID)
		return n.settled(ctx, key, "rate_limited_global")
	}
	if err := n.o.Mail.Send(ctx, m); err != nil {
		if _, gerr := n.countHour(ctx, hour, -1); gerr != nil {
			n.log.Warn("could not give back a unit of the hourly mail cap", "err", gerr)
		}
		if mail.Permanent(err) {
			n.log.Warn("mail refused for good; not retried", "event", b.ID, "err", err)
			return n.settled(ctx, key, "rejected")
		}
		n.m.mails.WithLabelValues("failed").Inc()
		return fmt.Errorf("send the mail: %w", err)
	}
	return n.settled(ctx, key, "sent")
}

// settled counts a mail's result and marks its event's mail done, so
// that no redelivery tries it again.
func (n *Notifier) settled(ctx context.Context, key, result string) error {
	n.m.mails.WithLabelValues(result).Inc()
	n.remember(ctx, key)
	return nil
}

// takeSlot takes the mail slot key of this interval for event id: false
// when another event holds it. The slot is the event's: a redelivery of
// the event that took it may still mail.
func (n *Notifier) takeSlot(ctx context.Context, key, id string) (bool, error) {
	_, err := n.users.Create(ctx, key, []byte(id))
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("write %s: %w", BucketUsers, err)
	}
	e, err := n.users.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", BucketUsers, err)
	}
	return string(e.Value()) == id, nil
}

// blockEnded reports a block over at now: past its end, or, for a
// permanent one, older than a day.
func blockEnded(b *events.Block, now time.Time) bool {
	if b.Until != nil {
		return !now.Before(*b.Until)
	}
	return now.Sub(b.Time) > 24*time.Hour
}

// address is the user's mail address, if one is known.
func (n *Notifier) address(ctx context.Context, user string) (string, bool, error) {
	if n.o.Lookup != nil {
		return n.o.Lookup.Email(ctx, user)
	}
	if !n.o.MailToUsername {
		return "", false, nil
	}
	if !mail.BareAddress(user) {
		return "", false, nil
	}
	return user, true, nil
}

// hourKey names the counter of t's clock hour in BucketHours.
func hourKey(t time.Time) string { return "h_" + strconv.FormatInt(t.Unix()/3600, 10) }

// countHour adds delta to the mails counted under key, shared by every
// instance (a counter updated with compare-and-set): 1 takes a mail of
// the hour's cap, false when the cap is reached; -1 gives one back.
func (n *Notifier) countHour(ctx context.Context, key string, delta int) (bool, error) {
	if n.o.MailsPerHour <= 0 {
		return true, nil
	}
	for range 20 {
		e, err := n.hours.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if delta < 0 {
				return true, nil // the hour is gone
			}
			if _, err := n.hours.Create(ctx, key, []byte(strconv.Itoa(delta))); err == nil {
				return true, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return false, fmt.Errorf("count the hour's mails: %w", err)
			}
			continue
		} else if err != nil {
			return false, fmt.Errorf("count the hour's mails: %w", err)
		}
		count, _ := strconv.Atoi(string(e.Value()))
		if delta > 0 && count+delta > n.o.MailsPerHour {
			return false, nil
		}
		if _, err := n.hours.Update(ctx, key, []byte(strconv.Itoa(max(0, count+delta))), e.Revision()); err == nil {
			return true, nil
		}
	}
	return false, errors.New("count the hour's mails: too much contention")
}

// keepAlive tells NATS the event is still in progress every third of
// AckWait, so a slow send or webhook retry is not handed to another
// instance meanwhile; the returned function stops it.
func (n *Notifier) keepAlive(ctx context.Context, msg jetstream.Msg) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(n.o.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { cancel(); <-done }
}

// retryDelay grows with the event's deliveries: 5 s, 10 s, ... 5 min.
func retryDelay(msg jetstream.Msg) time.Duration {
	d := 5 * time.Second
	if md, err := msg.Metadata(); err == nil {
		for i := uint64(1); i < md.NumDelivered && d < 5*time.Minute; i++ {
			d *= 2
		}
	}
	return min(d, 5*time.Minute)
}

// digest is a key for any string in a bucket, whose keys allow few
// characters.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// BucketDead holds the webhook calls given up on, for the admins to see.
const BucketDead = "DEFENDER_NOTIFY_DEAD"

// DeadLetter keeps a webhook call given up on in BucketDead (kept as long
// as the stream keeps events).
func (n *Notifier) DeadLetter(ctx context.Context, dl webhook.DeadLetter) error {
	data, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	key := strconv.FormatInt(dl.Time.UnixNano(), 10) + "_" + digest(dl.Endpoint)
	if _, err := n.dead.Put(ctx, key, data); err != nil {
		return fmt.Errorf("keep a dead letter in %s: %w", BucketDead, err)
	}
	return nil
}

// maxDeadLetters is the most DeadLetters reads: the newest.
const maxDeadLetters = 200

// DeadLetters reads the newest webhook calls given up on (maxDeadLetters
// at most), oldest first (none when the bucket does not exist yet).
//
// It reads without a consumer: the keys are the subjects the bucket's
// stream info lists, the values direct gets. A reader allowed only
// $JS.API.STREAM.INFO.KV_DEFENDER_NOTIFY_DEAD and
// $JS.API.DIRECT.GET.KV_DEFENDER_NOTIFY_DEAD.> (the admin, in the
// README's NATS permissions) reads them, and changes nothing.
func DeadLetters(ctx context.Context, js jetstream.JetStream) ([]webhook.DeadLetter, error) {
	kv, err := js.KeyValue(ctx, BucketDead)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("open %s: %w", BucketDead, err)
	}
	st, err := js.Stream(ctx, "KV_"+BucketDead)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", BucketDead, err)
	}
	prefix := "$KV." + BucketDead + "."
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", BucketDead, err)
	}
	var names []string
	for subject := range info.State.Subjects {
		names = append(names, strings.TrimPrefix(subject, prefix))
	}
	// Keys start with the time in ns (19 digits until 2286): the newest
	// sort last.
	slices.Sort(names)
	if len(names) > maxDeadLetters {
		names = names[len(names)-maxDeadLetters:]
	}
	var out []webhook.DeadLetter
	for _, k := range names {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // expired meanwhile, or deleted
		}
		var dl webhook.DeadLetter
		if err := json.Unmarshal(e.Value(), &dl); err == nil {
			out = append(out, dl)
		}
	}
	slices.SortFunc(out, func(a, b webhook.DeadLetter) int { return a.Time.Compare(b.Time) })
	return out, nil
}
