package rpc

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	cachev1 "github.com/parleyhq/parley/gen/pb/parley/cache/v1"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

// panicky is a store with bugs: it panics on the key "boom" and fails with an error no
// handler maps on "oops". Only Lookup and Put are called.
type panicky struct{ Cache }

func (panicky) Lookup(_ context.Context, k store.Key, _ time.Duration) (store.Lookup, error) {
	if k.Hash == "boom" {
		panic("store bug on lookup")
	}
	if k.Hash == "oops" {
		return store.Lookup{}, errors.New("store detail on lookup")
	}
	return store.Lookup{Outcome: store.OutcomeLeased, Lease: 7}, nil
}

func (panicky) Put(_ context.Context, k store.Key, _ []byte, _ time.Duration) error {
	if k.Hash == "boom" {
		panic("store bug on put")
	}
	if k.Hash == "oops" {
		return errors.New("store detail on put")
	}
	return nil
}

// TestBatchPanicFailsOneCall: a call of a batch that panics or fails unmapped, on the
// handler's goroutine or on another, fails alone with Internal and an id in the log; the
// batch and the process go on.
func TestBatchPanicFailsOneCall(t *testing.T) {
	t.Parallel()
	for _, keys := range [][]string{{"boom", "a", "oops", "b"}, {"oops", "boom", "a", "b"}} {
		var log bytes.Buffer
		h := NewHandler(panicky{}, slog.New(slog.NewJSONHandler(&log, nil)))
		var lookups []*cachev1.LookupRequest
		var puts []*cachev1.PutRequest
		for _, k := range keys {
			lookups = append(lookups, &cachev1.LookupRequest{Key: k})
			puts = append(puts, &cachev1.PutRequest{Key: k, Value: []byte("v"), Ttl: durationpb.New(time.Hour)})
		}
		lres, err := h.LookupBatch(t.Context(), &cachev1.LookupBatchRequest{Lookups: lookups})
		require.NoError(t, err)
		pres, err := h.PutBatch(t.Context(), &cachev1.PutBatchRequest{Puts: puts})
		require.NoError(t, err)
		for i, k := range keys {
			if k != "boom" && k != "oops" {
				require.Equal(t, cachev1.LookupOutcome_LOOKUP_OUTCOME_LEASED, lres.GetResults()[i].GetResponse().GetOutcome(), k)
				require.Nil(t, pres.GetResults()[i].GetError(), k)
				continue
			}
			for _, e := range []*cachev1.BatchError{lres.GetResults()[i].GetError(), pres.GetResults()[i].GetError()} {
				require.Equal(t, uint32(connect.CodeInternal), e.GetCode())
				require.Contains(t, e.GetMessage(), "internal error (id ")
				require.NotContains(t, e.GetMessage(), "store", "the panic or error stays in the log")
			}
			require.Nil(t, lres.GetResults()[i].GetResponse())
		}
		require.Contains(t, log.String(), "store bug on lookup")
		require.Contains(t, log.String(), "store bug on put")
		require.Contains(t, log.String(), "store detail on lookup")
		require.Contains(t, log.String(), "store detail on put")
	}
}

// TestBatchesReuseWorkers counts the goroutines batches start: a batch of n runs its first
// call on the handler's goroutine and the others on workers kept from batch to batch, so
// rounds of batches start only as many workers as the largest batch needs, up to
// maxIdleWorkers kept.
func TestBatchesReuseWorkers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sizes   []int
		started int
	}{
		{name: "one call a batch", sizes: []int{1, 1, 1}, started: 0},
		{name: "the same size round after round", sizes: []int{4, 4, 4, 4}, started: 3},
		{name: "growing", sizes: []int{2, 5, 3, 5}, started: 4},
		{name: "more than are kept", sizes: []int{maxIdleWorkers + 3, maxIdleWorkers + 3}, started: maxIdleWorkers + 2 + 2},
		{name: "empty", sizes: []int{0}, started: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := NewHandler(panicky{}, slog.New(slog.DiscardHandler))
			for _, n := range tt.sizes {
				// Each batch's calls wait for one another, so all n run at once.
				var arrived sync.WaitGroup
				arrived.Add(n)
				errs := h.each(t.Context(), "/test", n, func(int) error {
					arrived.Done()
					arrived.Wait()
					return nil
				})
				require.Len(t, errs, n)
				for _, e := range errs {
					require.Nil(t, e)
				}
			}
			require.Equal(t, tt.started, h.workers.Started())
		})
	}
}
