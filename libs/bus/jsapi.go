package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// APIAttempt is how long one JetStream API request of a service's start-up (a stream,
// bucket or consumer created or looked up) waits for its answer before it is sent again.
const APIAttempt = 2 * time.Second

// apiRetryPause separates the attempts of RetryAPI.
const apiRetryPause = 100 * time.Millisecond

// JetStream API error codes that a cluster answers while it is still forming or while a
// leader changes, and answers differently a moment later.
const (
	// jsClusterNoPeers: no suitable peers for placement, as when the other nodes of a
	// starting cluster have not yet reported in.
	jsClusterNoPeers jetstream.ErrorCode = 10005
	// jsClusterNotAvail: JetStream system temporarily unavailable (no meta leader).
	jsClusterNotAvail jetstream.ErrorCode = 10008
)

// RetryAPI runs call, which makes idempotent JetStream API requests (look up, create or
// create-or-update), until it is answered or ctx ends. Each attempt gets at most attempt
// of ctx.
//
// A clustered JetStream leaves some requests unanswered on purpose: a node that is not
// the stream's or the meta group's leader stays silent so that the leader answers, and a
// request that arrives as the leadership moves is answered by no one. A single request
// would then wait out all of ctx (a service's whole start-up) for an answer that never
// comes, as one audit service did in CI beside a three-node cluster. An attempt that is
// not answered in time, finds no responders, or is told the cluster is not available yet
// is made again; any other answer, success or error, is returned as it is. When ctx ends,
// the last attempt's error is returned.
func RetryAPI[T any](ctx context.Context, attempt time.Duration, call func(context.Context) (T, error)) (T, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		v, err := call(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !apiRetryable(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(apiRetryPause):
		}
	}
}

// apiRetryable reports whether err is an answer a JetStream cluster can give differently
// a moment later: none at all, no responders, or the cluster not formed yet. RetryAPI
// only calls it while its own ctx is alive, so a deadline here is the attempt's.
func apiRetryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsClusterNotAvail || apiErr.ErrorCode == jsClusterNoPeers
	}
	return false
}
