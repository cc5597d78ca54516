package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/parleyhq/parley/libs/cachepurge"
)

// noticeFlushTimeout bounds the wait for the server to take the routers' purge notice.
const noticeFlushTimeout = 5 * time.Second

// Purged is what a purge dropped.
type Purged struct {
	// Bucket counts the messages removed from the bucket: entries, leases and markers.
	Bucket uint64
	// Local counts the entries removed from this replica's memory.
	Local uint64
}

// Purge drops every entry of tenant, of component (in every tenant), or of component
// in tenant: from the bucket with one subject-filtered stream purge, from this
// replica's memory at once, from the other replicas' memory through a purge notice
// in the bucket that each of them watches, and from the routers' near caches through a
// notice on cachepurge.Subject.
func (s *Store) Purge(ctx context.Context, tenant, component string) (Purged, error) {
	switch {
	case tenant == "" && component == "":
		return Purged{}, ErrInvalidPurge
	case len(tenant) > maxScopeBytes || len(component) > maxScopeBytes:
		return Purged{}, ErrInvalidScope
	case s.kv == nil:
		return Purged{}, ErrNotStarted
	}
	t, c := purgeScope(tenant, component)
	n, err := s.purgeSubject(ctx, s.subject+t+"."+c+".>")
	if err != nil {
		s.metrics.errors.WithLabelValues("purge").Inc()
		return Purged{}, fmt.Errorf("purge bucket: %w", classify(ctx, err))
	}
	local := s.l1.purge(t, c)
	s.metrics.purges.Inc()
	s.metrics.purged.WithLabelValues(layerL2).Add(float64(n))
	s.metrics.purged.WithLabelValues(layerL1).Add(float64(local))
	if err := s.publish(ctx, noticePrefix+nuid.Next(), []byte(t+"."+c), noticeTTL); err != nil {
		s.metrics.errors.WithLabelValues("purge").Inc()
		return Purged{Bucket: n, Local: local}, fmt.Errorf("publish purge notice: %w", classify(ctx, err))
	}
	// The routers' near caches (libs/cachepurge): after the bucket purge, so a router
	// that refills from the bucket once it drops its copy finds nothing stale.
	notice, err := cachepurge.Notice{Tenant: tenant, Component: component}.Encode()
	if err == nil {
		err = s.js.Conn().Publish(cachepurge.Subject, notice)
	}
	if err == nil {
		// Out before the purge is reported done (the flush waits for the server's
		// answer, so it needs a deadline).
		fctx, cancel := context.WithTimeout(ctx, noticeFlushTimeout)
		err = s.js.Conn().FlushWithContext(fctx)
		cancel()
	}
	if err != nil {
		s.metrics.errors.WithLabelValues("purge").Inc()
		return Purged{Bucket: n, Local: local}, fmt.Errorf("publish purge notice to routers: %w", classify(ctx, err))
	}
	return Purged{Bucket: n, Local: local}, nil
}

// purgeSubject purges the bucket's messages on subjects matching filter and returns
// how many went. jetstream.Stream.Purge drops the count JetStream reports, so this
// makes the same API request itself (no JetStream domain is configured in Parley).
func (s *Store) purgeSubject(ctx context.Context, filter string) (uint64, error) {
	req, err := json.Marshal(jetstream.StreamPurgeRequest{Subject: filter})
	if err != nil {
		return 0, fmt.Errorf("encode purge request: %w", err)
	}
	msg, err := s.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+s.stream, req)
	if err != nil {
		return 0, fmt.Errorf("purge request: %w", err)
	}
	var resp struct {
		Purged uint64              `json:"purged"`
		Error  *jetstream.APIError `json:"error,omitempty"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("decode purge response: %w", err)
	}
	if resp.Error != nil {
		return 0, resp.Error
	}
	return resp.Purged, nil
}

// followPurges drops from memory what purges made through any replica select. If the
// watch ends while the store runs (the connection closed), memory is cleared and
// turned off, since purges could no longer reach it.
func (s *Store) followPurges(ctx context.Context, w jetstream.KeyWatcher) {
	defer s.bg.Done()
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() == nil {
					s.l1.blind()
				}
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if t, c, ok := strings.Cut(string(e.Value()), "."); ok {
				s.metrics.purged.WithLabelValues(layerL1).Add(float64(s.l1.purge(t, c)))
			}
		}
	}
}
