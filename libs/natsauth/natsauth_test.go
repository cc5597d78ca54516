package natsauth_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/cachepurge"
	"github.com/parleyhq/parley/libs/natsauth"
	"github.com/parleyhq/parley/libs/natstest"
)

// servers start a locked server both ways: users as options (the embedded server of
// `make up`) and as the generated configuration file (an external server, deploy/).
var servers = []struct {
	name string
	run  func(testing.TB, ...natsauth.User) *natstest.Locked
}{
	{"options", natstest.RunLockedServer},
	{"config file", natstest.RunConfiguredServer},
}

// forEachServer runs test against each kind of locked server with one user of each
// role, and workers of two components.
func forEachServer(t *testing.T, test func(t *testing.T, l *natstest.Locked)) {
	t.Helper()
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			test(t, constellation(t, srv.run))
		})
	}
}

func constellation(t *testing.T, run func(testing.TB, ...natsauth.User) *natstest.Locked) *natstest.Locked {
	t.Helper()
	return run(t,
		natsauth.User{Name: "router", Role: natsauth.Router},
		natsauth.User{Name: "worker-echo", Role: natsauth.Worker, Components: []string{"echo"}},
		natsauth.User{Name: "worker-other", Role: natsauth.Worker, Components: []string{"other"}},
		natsauth.User{Name: "cache", Role: natsauth.Cache},
		natsauth.User{Name: "audit", Role: natsauth.Audit},
		natsauth.User{Name: "admin", Role: natsauth.Admin},
	)
}

// violation waits for the server's permission error naming subject.
func violation(t *testing.T, errs <-chan error, subject string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-errs:
			if strings.Contains(err.Error(), "Permissions Violation") && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-timeout:
			t.Fatalf("no permissions violation for %q", subject)
		}
	}
}

func TestUnknownClientCannotConnect(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		_, err := nats.Connect(l.ClientURL(), nats.MaxReconnects(0))
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("connect without credentials: err = %v, want authorization violation", err)
		}
	})
}

// TestWorkerCannotReadOtherComponents: a worker's credentials take its own component's
// work through its queue group and nothing else: no plain subscription (which would see
// every request of the component), no other group, no other component, no inboxes.
func TestWorkerCannotReadOtherComponents(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		router := l.ConnectAs(t, "router", nil)
		errs := make(chan error, 16)
		worker := l.ConnectAs(t, "worker-echo", errs)

		tests := []struct {
			name, subject, queue string
		}{
			{"other component's group", "parley.provider.other", "parley.provider.other"},
			{"other component, plain", "parley.provider.other", ""},
			{"own component, plain", "parley.provider.echo", ""},
			{"own component, another group", "parley.provider.echo", "eavesdrop"},
			{"every component", "parley.provider.>", ""},
			{"every inbox", "_INBOX.>", ""},
			{"audit events", auditevent.Subject, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got := make(chan *nats.Msg, 1)
				handler := func(m *nats.Msg) { got <- m }
				var err error
				if tc.queue == "" {
					_, err = worker.Subscribe(tc.subject, handler)
				} else {
					_, err = worker.QueueSubscribe(tc.subject, tc.queue, handler)
				}
				if err != nil {
					t.Fatal(err)
				}
				violation(t, errs, tc.subject)
				// The subscription is refused: what the router sends there never arrives.
				// (The own group below proves delivery works for what is allowed.)
				publish := strings.ReplaceAll(strings.ReplaceAll(tc.subject, ">", "x"), "*", "x")
				if !strings.HasPrefix(publish, "_INBOX") { // the router may not publish there either
					if err := router.Publish(publish, []byte("prompt")); err != nil {
						t.Fatal(err)
					}
				}
				if err := router.Flush(); err != nil {
					t.Fatal(err)
				}
				if err := worker.Flush(); err != nil {
					t.Fatal(err)
				}
				select {
				case m := <-got:
					t.Fatalf("received %q on a refused subscription", m.Subject)
				default:
				}
			})
		}

		// The own group works, with heartbeats and a final reply to the router.
		own, err := worker.QueueSubscribe("parley.provider.echo", "parley.provider.echo", func(m *nats.Msg) {
			for range 3 {
				_ = m.Respond([]byte("heartbeat"))
			}
			_ = m.Respond([]byte("answer"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := worker.Flush(); err != nil {
			t.Fatal(err)
		}
		inbox := router.NewInbox()
		replies, err := router.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := router.PublishRequest("parley.provider.echo", inbox, []byte("prompt")); err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{"heartbeat", "heartbeat", "heartbeat", "answer"} {
			m, err := replies.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			if string(m.Data) != want {
				t.Fatalf("reply %d = %q, want %q", i, m.Data, want)
			}
		}
		_ = own.Unsubscribe()
	})
}

// TestWorkerCannotJoinOtherGroup: component-X credentials cannot take component Y's
// work, so they cannot answer in Y's workers' place.
func TestWorkerCannotJoinOtherGroup(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		router := l.ConnectAs(t, "router", nil)
		other := l.ConnectAs(t, "worker-other", nil)
		errs := make(chan error, 4)
		impostor := l.ConnectAs(t, "worker-echo", errs)

		if _, err := impostor.QueueSubscribe("parley.provider.other", "parley.provider.other", func(m *nats.Msg) {
			_ = m.Respond([]byte("forged"))
		}); err != nil {
			t.Fatal(err)
		}
		violation(t, errs, "parley.provider.other")
		if _, err := other.QueueSubscribe("parley.provider.other", "parley.provider.other", func(m *nats.Msg) {
			_ = m.Respond([]byte("genuine"))
		}); err != nil {
			t.Fatal(err)
		}
		if err := other.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			m, err := router.Request("parley.provider.other", []byte("prompt"), 10*time.Second)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if string(m.Data) != "genuine" {
				t.Fatalf("request %d answered %q", i, m.Data)
			}
		}
	})
}

// TestOnlyRoutersPublishWorkAndAudit: worker, cache and audit credentials can neither
// call providers directly nor put events into the audit stream.
func TestOnlyRoutersPublishWorkAndAudit(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		admin := l.ConnectAs(t, "admin", nil)
		ajs, err := jetstream.New(admin)
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		stream, err := auditevent.Ensure(ctx, ajs, 1)
		if err != nil {
			t.Fatal(err)
		}
		// A worker listening for work: a direct call must never reach it.
		worker := l.ConnectAs(t, "worker-echo", nil)
		work := make(chan *nats.Msg, 1)
		if _, err := worker.QueueSubscribe("parley.provider.echo", "parley.provider.echo", func(m *nats.Msg) { work <- m }); err != nil {
			t.Fatal(err)
		}
		if err := worker.Flush(); err != nil {
			t.Fatal(err)
		}

		for _, name := range []string{"worker-echo", "worker-other", "cache", "audit"} {
			for _, subject := range []string{"parley.provider.echo", auditevent.Subject} {
				t.Run(name+" "+subject, func(t *testing.T) {
					errs := make(chan error, 4)
					nc := l.ConnectAs(t, name, errs)
					if err := nc.PublishMsg(&nats.Msg{Subject: subject, Reply: nc.NewInbox(), Data: []byte("forged"), Header: nats.Header{"Nats-Msg-Id": {"forged-" + name}}}); err != nil {
						t.Fatal(err)
					}
					violation(t, errs, subject)
				})
			}
		}
		// The router's own publishes got through, the forged ones did not.
		rjs, err := jetstream.New(l.ConnectAs(t, "router", nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rjs.Publish(ctx, auditevent.Subject, []byte("genuine"), jetstream.WithMsgID("genuine")); err != nil {
			t.Fatalf("router audit publish: %v", err)
		}
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 1 {
			t.Fatalf("audit stream holds %d events, want only the router's", info.State.Msgs)
		}
		select {
		case m := <-work:
			t.Fatalf("worker received a direct call: %q", m.Data)
		default:
		}
	})
}

// TestRouterCannotConsumeAuditOrReadCache: the router publishes audit events but cannot
// read them back, and cannot touch the cache bucket; only audit and cache can.
func TestRouterCannotConsumeAuditOrReadCache(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		ctx := t.Context()
		js := func(name string, errs chan<- error) jetstream.JetStream {
			j, err := jetstream.New(l.ConnectAs(t, name, errs))
			if err != nil {
				t.Fatal(err)
			}
			return j
		}
		// The owners set their things up.
		cjs := js("cache", nil)
		kv, err := cjs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsauth.DefaultBucket, LimitMarkerTTL: time.Minute})
		if err != nil {
			t.Fatalf("cache creates its bucket: %v", err)
		}
		if _, err := kv.Put(ctx, "k", []byte("cached answer")); err != nil {
			t.Fatalf("cache puts: %v", err)
		}
		if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "cached answer" {
			t.Fatalf("cache gets: %v", err)
		}
		rjs := js("router", nil)
		if _, err := auditevent.Ensure(ctx, rjs, 1); err != nil {
			t.Fatalf("router ensures the audit stream: %v", err)
		}
		if _, err := rjs.Publish(ctx, auditevent.Subject, []byte("event"), jetstream.WithMsgID("r1")); err != nil {
			t.Fatalf("router publishes an audit event: %v", err)
		}
		ajs := js("audit", nil)
		c, err := ajs.CreateOrUpdateConsumer(ctx, auditevent.Stream, jetstream.ConsumerConfig{Durable: "parley-audit", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatalf("audit creates its consumer: %v", err)
		}
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				t.Fatalf("audit acks: %v", err)
			}
		}

		// Each JetStream API call, a consumer's deliveries and a direct write, as raw
		// requests from the router's connection: the server refuses every one.
		bucket, kvStream := natsauth.DefaultBucket, "KV_"+natsauth.DefaultBucket
		tests := []struct{ name, subject, body string }{
			{"create a consumer on the audit stream", "$JS.API.CONSUMER.CREATE." + auditevent.Stream + ".rogue", `{"stream_name":"PARLEY_AUDIT","config":{"durable_name":"rogue","ack_policy":"explicit"}}`},
			{"fetch the audit consumer's events", "$JS.API.CONSUMER.MSG.NEXT." + auditevent.Stream + ".parley-audit", `{"batch":1}`},
			{"read the audit consumer", "$JS.API.CONSUMER.INFO." + auditevent.Stream + ".parley-audit", ""},
			{"read an audit event", "$JS.API.STREAM.MSG.GET." + auditevent.Stream, `{"seq":1}`},
			{"delete the audit stream", "$JS.API.STREAM.DELETE." + auditevent.Stream, ""},
			{"open the cache bucket", "$JS.API.STREAM.INFO." + kvStream, ""},
			{"get a cache entry", "$JS.API.DIRECT.GET." + kvStream + ".$KV." + bucket + ".k", ""},
			{"purge the cache", "$JS.API.STREAM.PURGE." + kvStream, ""},
			{"watch the cache", "$JS.API.CONSUMER.CREATE." + kvStream, `{"stream_name":"KV_parley_cache","config":{"deliver_subject":"_INBOX.x"}}`},
			{"forge a cache entry", "$KV." + bucket + ".k", "forged"},
		}
		errs := make(chan error, 4)
		router := l.ConnectAs(t, "router", errs)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if err := router.PublishRequest(tc.subject, router.NewInbox(), []byte(tc.body)); err != nil {
					t.Fatal(err)
				}
				violation(t, errs, tc.subject)
			})
		}
		if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "cached answer" {
			t.Fatalf("cache entry after the router's attempts: %v %v", e, err)
		}
	})
}

func TestUsersThatCannotBeExpressed(t *testing.T) {
	t.Parallel()
	const key = "UARBI26SW3D4S64NRBDYZKMMBL4U3IK57RVTLKG2DB2ETLL2H7FVNA4D"
	tests := []struct {
		name  string
		users []natsauth.User
		want  string
	}{
		{"no users", nil, "no users"},
		{"not a user key", []natsauth.User{{Name: "r", Role: natsauth.Router, NKey: "SUAB"}}, "not a public user nkey"},
		{"unknown role", []natsauth.User{{Name: "r", Role: "root", NKey: key}}, `unknown role "root"`},
		{"wildcard component", []natsauth.User{{Name: "w", Role: natsauth.Worker, Components: []string{"*"}, NKey: key}}, "not a subject token"},
		{"empty component", []natsauth.User{{Name: "w", Role: natsauth.Worker, Components: []string{""}, NKey: key}}, "not a subject token"},
		{"component with a space", []natsauth.User{{Name: "w", Role: natsauth.Worker, Components: []string{"a b"}, NKey: key}}, "not a subject token"},
		{"bucket with a dot", []natsauth.User{{Name: "c", Role: natsauth.Cache, Bucket: "a.b", NKey: key}}, "not a bucket name"},
		{"one key twice", []natsauth.User{{Name: "a", Role: natsauth.Router, NKey: key}, {Name: "b", Role: natsauth.Audit, NKey: key}}, "used twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := natsauth.ServerUsers(tc.users); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ServerUsers: err = %v, want %q", err, tc.want)
			}
			if _, err := natsauth.Config(tc.users); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Config: err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestSeedsSurviveRestarts: LoadOrCreate creates a seed once, private to its owner,
// and reads the same key back afterwards; a damaged seed file is an error, not a new key.
func TestSeedsSurviveRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := []natsauth.User{{Name: "router", Role: natsauth.Router}, {Name: "cache", Role: natsauth.Cache}}
	first, err := natsauth.LoadOrCreate(dir, users)
	if err != nil {
		t.Fatal(err)
	}
	if first[0].NKey == "" || first[0].NKey == first[1].NKey {
		t.Fatalf("keys %q, %q", first[0].NKey, first[1].NKey)
	}
	fi, err := os.Stat(natsauth.SeedFile(dir, "router"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := natsauth.LoadOrCreate(dir, users)
	if err != nil {
		t.Fatal(err)
	}
	for i := range users {
		if again[i].NKey != first[i].NKey {
			t.Fatalf("%s: key %s after a restart, was %s", users[i].Name, again[i].NKey, first[i].NKey)
		}
	}
	if err := os.WriteFile(natsauth.SeedFile(dir, "cache"), []byte("damaged\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.LoadOrCreate(dir, users); err == nil {
		t.Fatal("a damaged seed was accepted")
	}
}

// TestOnlyCachePublishesPurges: the cache's purge notices reach routers; no other
// credentials may publish one (a forged notice would empty near caches), and only
// routers may listen.
func TestOnlyCachePublishesPurges(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		router := l.ConnectAs(t, "router", nil)
		notices, err := router.SubscribeSync(cachepurge.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if err := router.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"router", "worker-echo", "audit"} {
			t.Run(name+" publishes", func(t *testing.T) {
				errs := make(chan error, 4)
				nc := l.ConnectAs(t, name, errs)
				if err := nc.Publish(cachepurge.Subject, []byte("forged "+name)); err != nil {
					t.Fatal(err)
				}
				violation(t, errs, cachepurge.Subject)
			})
		}
		for _, name := range []string{"worker-echo", "cache", "audit"} {
			t.Run(name+" subscribes", func(t *testing.T) {
				errs := make(chan error, 4)
				nc := l.ConnectAs(t, name, errs)
				if _, err := nc.SubscribeSync(cachepurge.Subject); err != nil {
					t.Fatal(err)
				}
				violation(t, errs, cachepurge.Subject)
			})
		}
		cache := l.ConnectAs(t, "cache", nil)
		if err := cache.Publish(cachepurge.Subject, []byte("genuine")); err != nil {
			t.Fatal(err)
		}
		m, err := notices.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("router receives the cache's notice: %v", err)
		}
		if string(m.Data) != "genuine" {
			t.Fatalf("router received %q first, want only the cache's notice", m.Data)
		}
	})
}

// TestStreamControl: a streaming worker reads its own inbox, and the router may publish
// there only to a reply subject the worker set on a message it sent (credits, cancel);
// nobody reads another user's inbox and the router cannot publish into one uninvited.
func TestStreamControl(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		routerErrs := make(chan error, 16)
		router := l.ConnectAs(t, "router", routerErrs)
		worker := l.ConnectAs(t, "worker-echo", nil)
		otherErrs := make(chan error, 4)
		other := l.ConnectAs(t, "worker-other", otherErrs)

		control := worker.NewInbox()
		credits, err := worker.SubscribeSync(control)
		if err != nil {
			t.Fatal(err)
		}
		// Another worker cannot read that inbox.
		if _, err := other.SubscribeSync(control); err != nil {
			t.Fatal(err)
		}
		violation(t, otherErrs, control)
		if _, err := worker.QueueSubscribe("parley.provider.echo", "parley.provider.echo", func(m *nats.Msg) {
			_ = worker.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: control, Data: []byte("chunk")})
		}); err != nil {
			t.Fatal(err)
		}
		if err := worker.Flush(); err != nil {
			t.Fatal(err)
		}

		// Uninvited, the router's publish to the worker's inbox is refused.
		if err := router.Publish(control, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		violation(t, routerErrs, control)

		inbox := router.NewInbox()
		replies, err := router.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := router.PublishRequest("parley.provider.echo", inbox, []byte("prompt")); err != nil {
			t.Fatal(err)
		}
		m, err := replies.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Reply != control {
			t.Fatalf("chunk reply subject = %q, want %q", m.Reply, control)
		}
		if err := m.Respond([]byte("credit")); err != nil {
			t.Fatal(err)
		}
		got, err := credits.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("credit: %v", err)
		}
		if string(got.Data) != "credit" {
			t.Fatalf("control subject got %q, want the credit (the forged message must not arrive)", got.Data)
		}
	})
}

// TestOnlyAuditPurgesAuditEvents: the audit service purges stored events from the audit
// stream (below its consumer's ack floor, once their rows are committed) but cannot
// delete single messages; the router can do neither to the events it published.
func TestOnlyAuditPurgesAuditEvents(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		ctx := t.Context()
		rjs, err := jetstream.New(l.ConnectAs(t, "router", nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := auditevent.Ensure(ctx, rjs, 1); err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for i := range 2 {
			ack, err := rjs.Publish(ctx, auditevent.Subject, []byte("sealed"), jetstream.WithMsgID(fmt.Sprintf("event-%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, ack.Sequence)
		}

		purge := "$JS.API.STREAM.PURGE." + auditevent.Stream
		del := "$JS.API.STREAM.MSG.DELETE." + auditevent.Stream
		routerErrs := make(chan error, 4)
		router := l.ConnectAs(t, "router", routerErrs)
		if err := router.PublishRequest(purge, router.NewInbox(), nil); err != nil {
			t.Fatal(err)
		}
		violation(t, routerErrs, purge)

		auditErrs := make(chan error, 4)
		audit := l.ConnectAs(t, "audit", auditErrs)
		if err := audit.PublishRequest(del, audit.NewInbox(), []byte(fmt.Sprintf(`{"seq":%d}`, seqs[0]))); err != nil {
			t.Fatal(err)
		}
		violation(t, auditErrs, del)

		ajs, err := jetstream.New(audit)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ajs.Stream(ctx, auditevent.Stream)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(auditevent.Subject), jetstream.WithPurgeSequence(seqs[1])); err != nil {
			t.Fatalf("audit purge: %v", err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 1 {
			t.Fatalf("audit stream holds %d events after a purge below the second, want 1", info.State.Msgs)
		}
	})
}

// TestRouterSharesLimits: the router creates the limits bucket and reads and
// compare-and-sets its counters, as the router's rate limiter does; the cache cannot
// forge a counter.
func TestRouterSharesLimits(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		ctx := t.Context()
		rjs, err := jetstream.New(l.ConnectAs(t, "router", nil))
		if err != nil {
			t.Fatal(err)
		}
		cfg := jetstream.KeyValueConfig{Bucket: bus.LimitsBucket, History: 1, TTL: 32 * 24 * time.Hour, Description: "limits"}
		kv, err := rjs.CreateOrUpdateKeyValue(ctx, cfg)
		if err != nil {
			t.Fatalf("router creates the limits bucket: %v", err)
		}
		if _, err := rjs.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			t.Fatalf("router opens the existing limits bucket: %v", err)
		}
		rev, err := kv.Create(ctx, "rpm.k1", []byte("1:1"))
		if err != nil {
			t.Fatalf("router creates a counter: %v", err)
		}
		if _, err := kv.Update(ctx, "rpm.k1", []byte("1:2"), rev); err != nil {
			t.Fatalf("router updates a counter: %v", err)
		}
		if e, err := kv.Get(ctx, "rpm.k1"); err != nil || string(e.Value()) != "1:2" {
			t.Fatalf("router reads a counter: %v", err)
		}

		errs := make(chan error, 4)
		cache := l.ConnectAs(t, "cache", errs)
		subject := "$KV." + bus.LimitsBucket + ".rpm.k1"
		if err := cache.PublishRequest(subject, cache.NewInbox(), []byte("1:0")); err != nil {
			t.Fatal(err)
		}
		violation(t, errs, subject)
		if e, err := kv.Get(ctx, "rpm.k1"); err != nil || string(e.Value()) != "1:2" {
			t.Fatalf("counter after the cache's attempt: %v %v", e, err)
		}
	})
}

// TestPresence: a worker announces itself on its own components' presence subjects only,
// routers hear it, and nobody else may listen or announce.
func TestPresence(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, l *natstest.Locked) {
		router := l.ConnectAs(t, "router", nil)
		heard, err := router.SubscribeSync(bus.WorkerSubjectPrefix + "*")
		if err != nil {
			t.Fatal(err)
		}
		if err := router.Flush(); err != nil {
			t.Fatal(err)
		}
		publishes := []struct{ user, subject string }{
			{"worker-echo", bus.PresenceSubject("other")},
			{"worker-other", bus.PresenceSubject("echo")},
			{"router", bus.PresenceSubject("echo")},
			{"cache", bus.PresenceSubject("echo")},
			{"audit", bus.PresenceSubject("echo")},
		}
		for _, tc := range publishes {
			t.Run(tc.user+" announces "+tc.subject, func(t *testing.T) {
				errs := make(chan error, 4)
				nc := l.ConnectAs(t, tc.user, errs)
				if err := nc.Publish(tc.subject, []byte("forged "+tc.user)); err != nil {
					t.Fatal(err)
				}
				violation(t, errs, tc.subject)
			})
		}
		for _, name := range []string{"worker-echo", "cache", "audit"} {
			t.Run(name+" listens", func(t *testing.T) {
				errs := make(chan error, 4)
				nc := l.ConnectAs(t, name, errs)
				if _, err := nc.SubscribeSync(bus.WorkerSubjectPrefix + "*"); err != nil {
					t.Fatal(err)
				}
				violation(t, errs, bus.WorkerSubjectPrefix+"*")
			})
		}
		worker := l.ConnectAs(t, "worker-echo", nil)
		if err := worker.Publish(bus.PresenceSubject("echo"), []byte("genuine")); err != nil {
			t.Fatal(err)
		}
		m, err := heard.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("router hears the worker: %v", err)
		}
		if string(m.Data) != "genuine" || m.Subject != bus.PresenceSubject("echo") {
			t.Fatalf("router heard %q on %s first, want only the worker's announcement", m.Data, m.Subject)
		}
	})
}
