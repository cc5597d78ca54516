// Package natsauth owns the NATS users of a Parley constellation and their subject
// permissions: who may publish provider work and audit events, who may take which
// provider work and announce which workers serve it, who may consume the audit stream and
// who may touch the cache bucket and the routers' limits bucket.
// The same permissions feed an embedded server (ServerUsers), a server configuration
// file (Config) and the deploy manifests, so every way of running Parley locks NATS
// down alike. Services never import it: they only present their credentials (libs/bus).
package natsauth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/cachepurge"
	"github.com/parleyhq/parley/libs/component"
)

// Role is what a NATS user does in the constellation.
type Role string

// The roles. pii-scrubber never connects to NATS.
const (
	// Router publishes provider work and audit events, reads the answers and answers
	// streaming workers' control subjects; it hears workers' presence.
	Router Role = "router"
	// Worker takes the provider work of its components and answers it; it reads its own
	// inbox for stream control and announces itself on its components' presence subjects.
	Worker Role = "provider-worker"
	// Cache owns the cache's key-value bucket.
	Cache Role = "cache"
	// Audit consumes the audit stream.
	Audit Role = "audit"
	// Admin may do anything: operators and test harnesses, never a service.
	Admin Role = "admin"
)

const (
	// DefaultBucket is the cache service's default CACHE_BUCKET.
	DefaultBucket = "parley_cache"
	// DefaultResponseTTL is how long a worker may answer a request it received:
	// heartbeats and the final reply. It must exceed the longest call
	// (ROUTER_REQUEST_TIMEOUT, 60 s by default).
	DefaultResponseTTL = 10 * time.Minute
)

// User is one NATS identity and what it is for.
type User struct {
	// Name labels the user in configuration files and on disk ("router", "worker-echo").
	Name string
	// Role decides the permissions.
	Role Role
	// Components are a Worker's components (its WORKER_COMPONENTS); none means every
	// component.
	Components []string
	// Bucket is a Cache's bucket (its CACHE_BUCKET); empty means DefaultBucket.
	Bucket string
	// NKey is the user's public nkey ("U...").
	NKey string
}

// Validate reports a user that cannot be expressed as permissions.
func (u User) Validate() error {
	if !nkeys.IsValidPublicUserKey(u.NKey) {
		return fmt.Errorf("natsauth: user %q: %q is not a public user nkey", u.Name, u.NKey)
	}
	switch u.Role {
	case Router, Cache, Audit, Admin:
	case Worker:
		for _, c := range u.Components {
			if err := component.CheckName(c); err != nil {
				return fmt.Errorf("natsauth: user %q: component %q is not a subject token: %w", u.Name, c, err)
			}
		}
	default:
		return fmt.Errorf("natsauth: user %q: unknown role %q", u.Name, u.Role)
	}
	if u.Role == Cache && u.Bucket != "" {
		if err := bus.CheckName(u.Bucket); err != nil {
			return fmt.Errorf("natsauth: user %q: bucket %q is not a bucket name: %w", u.Name, u.Bucket, err)
		}
	}
	return nil
}

// Permissions are the user's subject permissions; nil for an Admin (no limits).
func Permissions(u User) (*server.Permissions, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	inbox := bus.InboxPrefix(u.NKey) + ".>" // the only inboxes the user may read
	switch u.Role {
	case Router:
		limits := "KV_" + bus.LimitsBucket
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				bus.ProviderSubjectPrefix + ">",
				auditevent.Subject,
				// Ensure: look the audit stream up, create it when missing.
				"$JS.API.STREAM.INFO." + auditevent.Stream,
				"$JS.API.STREAM.CREATE." + auditevent.Stream,
				// The shared rate limits: create the bucket, read and compare-and-set
				// its counters.
				"$JS.API.INFO",
				"$JS.API.STREAM.INFO." + limits,
				"$JS.API.STREAM.CREATE." + limits,
				"$JS.API.STREAM.UPDATE." + limits,
				"$JS.API.STREAM.MSG.GET." + limits,
				"$JS.API.DIRECT.GET." + limits,
				"$JS.API.DIRECT.GET." + limits + ".>",
				"$KV." + bus.LimitsBucket + ".>",
			}},
			// Worker answers and heartbeats, the audit stream's publish acks, the
			// cache's purge notices for the near cache, and workers' presence.
			Subscribe: &server.SubjectPermission{Allow: []string{inbox, cachepurge.Subject, bus.WorkerSubjectPrefix + "*"}},
			// Stream control (credits, cancel) to the reply subject a streaming worker set on
			// its heartbeats and chunks, for as long as a call may run; nothing uninvited.
			Response: &server.ResponsePermission{MaxMsgs: -1, Expires: DefaultResponseTTL},
		}, nil
	case Worker:
		// Queue subscriptions only ("subject queue"), to the component's own group: a
		// plain subscription, or another group on the same subject, is refused.
		// It announces itself on its components' presence subjects only.
		var sub []string
		pub := []string{}
		if len(u.Components) == 0 {
			sub = []string{bus.ProviderSubjectPrefix + "> " + bus.ProviderSubjectPrefix + ">"}
			pub = []string{bus.WorkerSubjectPrefix + "*"}
		}
		for _, c := range u.Components {
			sub = append(sub, bus.ProviderSubjectPrefix+c+" "+bus.ProviderSubjectPrefix+c)
			pub = append(pub, bus.PresenceSubject(c))
		}
		// Its own inboxes: the control subjects of its streams (router credits, cancel).
		sub = append(sub, inbox)
		return &server.Permissions{
			// No publish but presence and answers (heartbeats, chunks, then the reply) to
			// the requests it received, for as long as a call may run.
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: sub},
			Response:  &server.ResponsePermission{MaxMsgs: -1, Expires: DefaultResponseTTL},
		}, nil
	case Cache:
		bucket := u.Bucket
		if bucket == "" {
			bucket = DefaultBucket
		}
		stream := "KV_" + bucket
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				"$KV." + bucket + ".>",
				// CreateOrUpdateKeyValue reads the account's JetStream limits and API level.
				"$JS.API.INFO",
				"$JS.API.STREAM.INFO." + stream,
				"$JS.API.STREAM.CREATE." + stream,
				"$JS.API.STREAM.UPDATE." + stream,
				"$JS.API.STREAM.PURGE." + stream,
				"$JS.API.STREAM.MSG.GET." + stream,
				"$JS.API.DIRECT.GET." + stream,
				"$JS.API.DIRECT.GET." + stream + ".>",
				// Watches (purge notices, leases) are ordered push consumers.
				"$JS.API.CONSUMER.CREATE." + stream,
				"$JS.API.CONSUMER.CREATE." + stream + ".>",
				"$JS.API.CONSUMER.INFO." + stream + ".>",
				"$JS.API.CONSUMER.DELETE." + stream + ".>",
				"$JS.FC." + stream + ".>",
				// Purge notices to the routers' near caches.
				cachepurge.Subject,
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}, nil
	case Audit:
		stream := auditevent.Stream
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				auditevent.DeadLetterSubject,
				"$JS.API.STREAM.INFO." + stream,
				"$JS.API.STREAM.CREATE." + stream,
				"$JS.API.CONSUMER.CREATE." + stream,
				"$JS.API.CONSUMER.CREATE." + stream + ".>",
				"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".>",
				"$JS.API.CONSUMER.INFO." + stream + ".>",
				"$JS.API.CONSUMER.MSG.NEXT." + stream + ".>",
				"$JS.ACK." + stream + ".>",
				// Purge the events already stored (below its consumer's ack floor): the
				// sealed raw copies do not outlive their ingestion.
				"$JS.API.STREAM.PURGE." + stream,
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}, nil
	}
	return nil, nil // Admin
}

// ServerUsers are the users as an embedded server's Options.Nkeys.
func ServerUsers(users []User) ([]*server.NkeyUser, error) {
	if err := checkUnique(users); err != nil {
		return nil, err
	}
	out := make([]*server.NkeyUser, 0, len(users))
	for _, u := range users {
		p, err := Permissions(u)
		if err != nil {
			return nil, err
		}
		out = append(out, &server.NkeyUser{Nkey: u.NKey, Permissions: p})
	}
	return out, nil
}

func checkUnique(users []User) error {
	if len(users) == 0 {
		return errors.New("natsauth: no users")
	}
	seen := map[string]bool{}
	for _, u := range users {
		if seen[u.NKey] {
			return fmt.Errorf("natsauth: nkey of user %q is used twice", u.Name)
		}
		seen[u.NKey] = true
	}
	return nil
}

// Config is the users as a nats-server configuration block: include it in the server's
// configuration file, or paste it there.
func Config(users []User) (string, error) {
	if err := checkUnique(users); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# Parley's NATS users and their subject permissions (libs/natsauth).\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		p, err := Permissions(u)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    # %s (%s", u.Name, u.Role)
		if u.Role == Worker {
			if len(u.Components) == 0 {
				b.WriteString(", every component")
			} else {
				fmt.Fprintf(&b, ", components %s", strings.Join(u.Components, ","))
			}
		}
		b.WriteString(")\n")
		fmt.Fprintf(&b, "    {\n      nkey: %s\n", u.NKey)
		if p != nil {
			b.WriteString("      permissions: {\n")
			writeList(&b, "publish", p.Publish.Allow)
			writeList(&b, "subscribe", p.Subscribe.Allow)
			if p.Response != nil {
				fmt.Fprintf(&b, "        allow_responses: {max: %d, expires: %q}\n", p.Response.MaxMsgs, p.Response.Expires.String())
			}
			b.WriteString("      }\n")
		}
		b.WriteString("    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func writeList(b *strings.Builder, name string, subjects []string) {
	fmt.Fprintf(b, "        %s: {allow: [", name)
	for i, s := range subjects {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%q", s)
	}
	b.WriteString("]}\n")
}
