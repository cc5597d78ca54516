// Package rpc serves parley.cache.v1.CacheService. It is the only place that turns the
// store's domain errors into Connect codes.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/gen/pb/parley/cache/v1/cachev1connect"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

// Cache is what the handler needs from the store.
type Cache interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Handler implements CacheService over a Cache.
type Handler struct {
	cache Cache
}

var _ cachev1connect.CacheServiceHandler = (*Handler)(nil)

// NewHandler returns a handler serving c.
func NewHandler(c Cache) *Handler {
	return &Handler{cache: c}
}

// Get returns the entry under the request's key, if it is live.
func (h *Handler) Get(ctx context.Context, req *cachev1.GetRequest) (*cachev1.GetResponse, error) {
	value, found, err := h.cache.Get(ctx, req.GetKey())
	if err != nil {
		return nil, toConnect(err)
	}
	return &cachev1.GetResponse{Found: found, Value: value}, nil
}

// Put stores the request's value under its key for its TTL.
func (h *Handler) Put(ctx context.Context, req *cachev1.PutRequest) (*cachev1.PutResponse, error) {
	if req.GetTtl() == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("ttl is required"))
	}
	if err := req.GetTtl().CheckValid(); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("ttl: %w", err))
	}
	if err := h.cache.Put(ctx, req.GetKey(), req.GetValue(), req.GetTtl().AsDuration()); err != nil {
		return nil, toConnect(err)
	}
	return &cachev1.PutResponse{}, nil
}

// toConnect maps the store's errors to codes. Anything unmapped is returned as is, and
// the shared middleware masks it as Internal.
func toConnect(err error) error {
	switch {
	case errors.Is(err, store.ErrInvalidKey), errors.Is(err, store.ErrInvalidTTL), errors.Is(err, store.ErrTooLarge):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, store.ErrFull):
		return connect.NewError(connect.CodeResourceExhausted, store.ErrFull)
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrNotStarted):
		// Checked before the context errors: a JetStream API timeout is Unavailable even
		// though it carries context.DeadlineExceeded.
		return connect.NewError(connect.CodeUnavailable, store.ErrUnavailable)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, context.DeadlineExceeded)
	}
	return err
}
