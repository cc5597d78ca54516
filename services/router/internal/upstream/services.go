package upstream

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	piiv1 "github.com/parleyhq/parley/gen/pb/parley/pii/v1"
	"github.com/parleyhq/parley/gen/pb/parley/pii/v1/piiv1connect"
	"github.com/parleyhq/parley/services/router/internal/conversation"
)

// Scrubber calls the pii-scrubber service.
type Scrubber struct {
	client piiv1connect.ScrubberServiceClient
}

// NewScrubber wraps a generated client.
func NewScrubber(client piiv1connect.ScrubberServiceClient) *Scrubber {
	return &Scrubber{client: client}
}

// Scrub scrubs texts in one call.
func (s *Scrubber) Scrub(ctx context.Context, texts []string) ([]conversation.Scrubbed, error) {
	res, err := s.client.Scrub(ctx, &piiv1.ScrubRequest{Texts: texts})
	if err != nil {
		return nil, fmt.Errorf("pii-scrubber: %w", err)
	}
	if len(res.GetResults()) != len(texts) {
		return nil, fmt.Errorf("pii-scrubber: %d results for %d texts", len(res.GetResults()), len(texts))
	}
	out := make([]conversation.Scrubbed, len(texts))
	for i, r := range res.GetResults() {
		out[i].Text = r.GetText()
		for _, f := range r.GetFindings() {
			out[i].Findings = append(out[i].Findings, conversation.Finding{Entity: f.GetEntity(), Start: int(f.GetStart()), End: int(f.GetEnd())})
		}
	}
	return out, nil
}

// Cache calls the cache service. Each call is bounded by timeout so a slow cache costs
// little: the conversation goes on without it.
type Cache struct {
	client  cachev1connect.CacheServiceClient
	timeout time.Duration
}

// NewCache wraps a generated client.
func NewCache(client cachev1connect.CacheServiceClient, timeout time.Duration) *Cache {
	return &Cache{client: client, timeout: timeout}
}

// Get returns the entry under key.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := c.client.Get(ctx, &cachev1.GetRequest{Key: key})
	if err != nil {
		return nil, false, fmt.Errorf("cache get: %w", err)
	}
	return res.GetValue(), res.GetFound(), nil
}

// Put stores value under key for ttl.
func (c *Cache) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.client.Put(ctx, &cachev1.PutRequest{Key: key, Value: value, Ttl: durationpb.New(ttl)})
	if err != nil {
		return fmt.Errorf("cache put: %w", err)
	}
	return nil
}
